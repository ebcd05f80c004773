"""The training loop, top to bottom: (resume), then encode clips, bind slots, step, log, save.

:func:`train` takes built objects (the model, the clips, where their features come from, the typed
options); :func:`dinosavi.cli.modes.run_train` builds them from the config. The frozen encoder runs on the
training device in the main process, batched; data-loader workers only decode and resize frames.

Launched with ``torchrun --nproc_per_node=N -m dinosavi mode=train ...`` the loop runs data-parallel
(DistributedDataParallel; NCCL on CUDA, gloo on CPU). ``data.batch_size`` is the *global* batch: each
process takes ``data.batch_size / N`` clips of every global batch, and random slot initialisations are
drawn for the global batch, so N processes follow the loss curve of one process up to float rounding.
Only rank 0 writes TensorBoard logs and checkpoints.

Unreadable files (see :mod:`dinosavi.data.badfiles`): a video with an unreadable or truncated file is
skipped, logged with its path, counted in TensorBoard (``data/skipped_videos``) and listed on disk so
later runs do not read it again; past ``data.max_bad_fraction`` of the videos training saves a
checkpoint and stops with an error. Data-loader workers hand what they skipped to the main process
with each batch.

Interruptions: Ctrl-C (SIGINT) saves a checkpoint and re-raises. SIGTERM, which cluster schedulers send
before they kill a job, and SIGUSR1, which some send before a requeue, finish the current step, save a
resumable checkpoint and exit with status ``128 + signal`` (143, 138); ``resume=<last.safetensors>``
continues exactly where the run stopped. Under torchrun the processes agree on the step to stop at.
Data-loader workers ignore both signals, so a signal sent to the whole process group cannot kill them
mid-batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate
from torch.utils.tensorboard import SummaryWriter

from dinosavi.data.badfiles import MAX_BAD_FRACTION, Skip, SkipLog
from dinosavi.data.sampler import EpochSampler
from dinosavi.data.videos import ClipDataset
from dinosavi.features.source import FeatureSource
from dinosavi.models.slot_model import ClipLoss, SlotModel
from dinosavi.precision import precision_dtype
from dinosavi.training.checkpoint import Checkpoint, capture_rng, restore_rng, save_checkpoint
from dinosavi.training.distributed import Distributed
from dinosavi.training.options import TrainOptions, warmup_steps
from dinosavi.viz.overlay import mask_grid, stretch_maps

__all__ = ["STOP_SIGNALS", "Trainer", "one_cycle", "train"]

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
)

log = logging.getLogger(__name__)


def train(
    model: SlotModel,
    clips: ClipDataset,
    source: FeatureSource,
    options: TrainOptions,
    run_dir: Path,
    *,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    resume: Checkpoint | None = None,
    skipped: SkipLog | None = None,
    ddp: Distributed | None = None,
) -> Path:
    """Train ``model`` on ``clips``; returns the path of the final checkpoint. The model is trained in place.

    Args:
        model: the slot model, on the training device.
        clips: the training clips (:func:`dinosavi.features.source.training_clips`).
        source: the encoder of raw clips (:meth:`FeatureSource.batch`).
        options: the optimisation recipe and its bookkeeping.
        run_dir: where TensorBoard logs and ``checkpoints/`` go (rank 0 only).
        batch_size: the global batch (split evenly over the processes).
        num_workers: data-loader worker processes.
        seed: the seed of the clip order (epoch ``e`` draws from ``seed + e``).
        config: the run's resolved config, stored in every checkpoint (what rebuilds the model).
        resume: a checkpoint to continue from: its weights, optimizer, schedule, RNG and data position.
        skipped: the record of unreadable videos (:mod:`dinosavi.data.badfiles`); when None, kept in memory,
            with ``data.max_bad_fraction``'s default share (1 %).
        ddp: this process's place in a ``torchrun`` launch, its process group joined (one process when None).

    Raises:
        ValueError: a batch that does not split over the processes or exceeds the clips, a checkpoint that
            cannot resume (weights only, or past ``max_steps``).
        SystemExit: status ``128 + signal`` after SIGTERM or SIGUSR1, once a resumable checkpoint is saved.
        KeyboardInterrupt: after Ctrl-C, once a resumable checkpoint is saved.
    """
    trainer = Trainer(model, clips, source, options, run_dir, batch_size, ddp or Distributed(), config or {},
                       skipped or SkipLog("the training clips", max(clips.num_found, 1), MAX_BAD_FRACTION, None))
    if resume is not None:
        trainer.resume(resume)
    return trainer.run(num_workers, seed)


@dataclass
class _Position:
    """Where training is: optimisation steps taken, the epoch, and batches taken of it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


class Trainer:
    """One training run: the optimisation state, one step, saving, and the loop over epochs.

    :func:`train` builds one and runs it; ``benchmarks/bench_gpu.py`` times its :meth:`step`, so what is
    measured is the step users run. Arguments as in :func:`train`; ``skipped`` is required here.
    """

    def __init__(self, model: SlotModel, clips: ClipDataset, source: FeatureSource, options: TrainOptions,
                 run_dir: Path, batch_size: int, ddp: Distributed, config: dict[str, Any], skipped: SkipLog) -> None:
        self.model, self.clips, self.source, self.options, self.ddp = model, clips, source, options, ddp
        self.config, self.skipped, self.batch_size = config, skipped, batch_size
        self.device = next(model.parameters()).device
        self.autocast, self.scaler = _precision(options.precision, self.device)
        if batch_size % ddp.world_size:
            raise ValueError(f"data.batch_size={batch_size} (the global batch) must be divisible by the "
                             f"{ddp.world_size} processes")
        self.per_process = batch_size // ddp.world_size
        if len(clips) // batch_size == 0:
            raise ValueError(f"data.batch_size={batch_size} is larger than the {len(clips)} clips of {skipped.root}; "
                             f"lower data.batch_size or raise data.clips_per_video")
        self.objective: nn.Module = _Objective(model)
        if ddp.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.objective = DistributedDataParallel(self.objective, device_ids=ids)
        if options.compile is not None:
            self.objective = cast(nn.Module, torch.compile(self.objective, backend=options.compile))
        self.optimizer = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.scheduler = one_cycle(self.optimizer, options.lr, options.max_steps, options.pct_start)
        self.max_norm = float("inf") if options.grad_clip is None else options.grad_clip
        self.at = _Position()
        self.ckpt_dir = run_dir / "checkpoints"
        self.last_path = self.ckpt_dir / "last.safetensors"
        self.run_dir, self.saved_at = run_dir, -1
        self.writer: SummaryWriter | None = None
        encoder = source.encoder
        log.info(
            "device=%s encoder=%s (D=%d, stride %d) input=%s clips=%d steps/epoch=%d params=%d precision=%s "
            "compile=%s processes=%d batch=%d per process; OneCycle over %d steps, warm-up %d", self.device,
            encoder.name, encoder.feature_dim, encoder.patch_size, source.rule.size, len(clips),
            len(clips) // batch_size, sum(p.numel() for p in model.parameters()), options.precision,
            options.compile, ddp.world_size, self.per_process, options.max_steps,
            warmup_steps(options.max_steps, options.pct_start),
        )

    def resume(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weights, optimizer, schedule, gradient scaler, RNG and data position."""
        self.at = _Position(*_resume(ckpt, self.model, self.optimizer, self.scheduler, self.scaler,
                                     self.options.max_steps))

    def save(self, name: str) -> Path:
        """Save ``checkpoints/<name>.safetensors`` and ``last.safetensors`` (rank 0, once per step)."""
        path = self.ckpt_dir / f"{name}.safetensors"
        if self.ddp.rank != 0 or self.saved_at == self.at.step:
            return path
        self.saved_at = self.at.step
        extra = {"epoch": self.at.epoch, "batch_in_epoch": self.at.batch_in_epoch,
                 "grad_scaler": self.scaler.state_dict()}
        for target in (path, self.last_path):
            save_checkpoint(target, self.model, self.config, self.at.step, self.optimizer, self.scheduler,
                            capture_rng(), extra)
        log.info("saved %s", path)
        return path

    def step(self, batch: Tensor | dict[str, Tensor], skips: list[Skip]) -> float:
        """One optimisation step on a batch; logs every ``log_every`` steps; returns the mean loss."""
        t0 = time.perf_counter()
        for skip in self.skipped.add(skips):
            self.clips.mark_bad(skip, report=False)  # found in a worker: later epochs skip it too
        frames, features, cls_attention = self.source.batch(self.clips.prepare(batch), self.device)
        with self.autocast:
            out: ClipLoss = self.objective(features, cls_attention, (self.ddp.rank, self.ddp.world_size))
        logs = self.ddp.mean({"loss/total": out.loss.detach(), **out.logs})
        if not torch.isfinite(logs["loss/total"]):
            last = self.last_path if self.last_path.exists() else "none (no checkpoint saved yet)"
            raise FloatingPointError(f"loss became {logs['loss/total'].item()} at step {self.at.step + 1}; the last "
                                     f"good checkpoint is {last}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.at.step += 1
        self.at.batch_in_epoch += 1
        step = self.at.step
        if self.writer is not None and (step % self.options.log_every == 0 or step == self.options.max_steps):
            for name, value in logs.items():
                self.writer.add_scalar(name, value.item(), step)
            self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], step)
            self.writer.add_scalar("train/grad_norm", grad_norm.item(), step)
            self.writer.add_scalar("train/clips_per_s", self.batch_size / (time.perf_counter() - t0), step)
            self.writer.add_scalar("data/skipped_videos", self.skipped.count, step)
            self.writer.add_image("masks", mask_grid(frames[0, 0], stretch_maps(out.alpha[0, 0])), step)
        return float(logs["loss/total"].item())

    def loader(self, num_workers: int, seed: int) -> DataLoader:
        """The batches of the current epoch, from the current position on."""
        self.clips.set_epoch(self.at.epoch)
        sampler = EpochSampler(len(self.clips), seed, self.at.epoch, self.at.batch_in_epoch * self.batch_size,
                               rank=self.ddp.rank, world_size=self.ddp.world_size, batch_size=self.per_process)
        return DataLoader(
            _WithSkips(self.clips), batch_size=self.per_process, sampler=sampler, drop_last=True,
            collate_fn=_collate_with_skips, num_workers=num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed + self.at.epoch),  # keeps the global RNG untouched
            worker_init_fn=_ignore_stop_signals,
            # workers start from a fresh interpreter, not a fork: a fork copies locks that other threads of this
            # process hold (torch.compile's workers, writer threads) and its child can wait on them forever
            multiprocessing_context="spawn" if num_workers > 0 else None,
        )

    def epochs(self, stop: _StopSignals, progress: Progress, num_workers: int, seed: int) -> signal.Signals | None:
        """Steps until ``max_steps``, a stop signal (returned) or too many unreadable videos (raised)."""
        task = progress.add_task("train", total=self.options.max_steps, completed=self.at.step, loss=float("nan"))
        while self.at.step < self.options.max_steps:
            for batch, skips in self.loader(num_workers, seed):
                loss = self.step(batch, skips)
                progress.update(task, completed=self.at.step, loss=loss)
                step = self.at.step
                if step % self.options.save_every == 0 and step < self.options.max_steps:
                    self.save(f"step-{step:07d}")
                if step >= self.options.max_steps:
                    return None
                stop_now, too_many_bad = self.ddp.any(stop.received is not None, self.skipped.over_limit)
                if too_many_bad:
                    self.save(f"step-{step:07d}")
                    raise self.skipped.error(f"; training stopped at step {step} (continue with "
                                             f"resume={self.last_path})")
                if stop_now:
                    return stop.received or signal.SIGTERM  # None: a signal reached another process
            self.at.epoch, self.at.batch_in_epoch = self.at.epoch + 1, 0
        return None

    def run(self, num_workers: int, seed: int) -> Path:
        """Train to ``max_steps`` and save the final checkpoint (see :func:`train`)."""
        self.skipped.add(self.clips.take_skips())
        if self.skipped.over_limit:
            raise self.skipped.error()
        if self.ddp.rank == 0:
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.at.step)
        self.model.train()
        columns = (TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
        try:
            with _StopSignals() as stop, Progress(*columns, transient=False, disable=self.ddp.rank != 0) as progress:
                stopped = self.epochs(stop, progress, num_workers, seed)
        except KeyboardInterrupt:
            log.warning("interrupted at step %d; saving", self.at.step)
            self.save(f"step-{self.at.step:07d}")
            raise
        finally:
            if self.writer is not None:
                self.writer.close()
        final = self.save(f"step-{self.at.step:07d}")
        if self.skipped.count:
            log.warning("skipped %d of %d videos of %s as unreadable (listed in %s)", self.skipped.count,
                        self.skipped.num_videos, self.skipped.root,
                        self.skipped.index.path if self.skipped.index else "no file")
        if stopped is not None:
            log.warning("received %s: stopped at step %d of %d and saved %s; continue with resume=%s",
                        stopped.name, self.at.step, self.options.max_steps, final, self.last_path)
            raise SystemExit(128 + stopped)
        return final


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, max_steps: int,
              pct_start: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """Torch's OneCycle schedule over ``max_steps`` peaking at ``lr``, its warm-up a whole number of steps
    (:func:`dinosavi.training.options.warmup_steps`), so that no step count divides by zero (torch's own, with
    ``pct_start * max_steps == 1``, does). Where ``pct_start * max_steps`` is already a whole number of at
    least 2 steps, up to float rounding (``0.1 x 300 = 30.000000000000004``; every preset's ordinary runs),
    ``pct_start`` is passed on as given: the same schedule, bit for bit, as ``OneCycleLR(pct_start=pct_start)``;
    otherwise the share of the rounded steps, or none.
    """
    steps = warmup_steps(max_steps, pct_start)
    if steps == 0 or abs(pct_start * max_steps - steps) > 1e-9:  # else whole up to float rounding: torch's own
        # torch multiplies back: of the floats next to steps / max_steps, the one whose product is nearest
        share, candidates = steps / max_steps, [steps / max_steps]
        for direction in (math.inf, -math.inf):
            near = share
            for _ in range(4):
                near = math.nextafter(near, direction)
                candidates.append(near)
        pct_start = min(candidates, key=lambda p: (abs(p * max_steps - steps), abs(p - share)))
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max_steps, pct_start=pct_start)


class _WithSkips(Dataset):
    """The items of ``dataset``, each with the skips found while reading it, so that the main process
    learns about unreadable files that data-loader workers met."""

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, list[Skip]]:
        item = self.dataset[index]
        return item, self.dataset.take_skips()


def _collate_with_skips(items: list[tuple[Any, list[Skip]]]) -> tuple[Any, list[Skip]]:
    """Batch the items as the default collate does; gather their skips in one list."""
    return default_collate([item for item, _ in items]), [skip for _, skips in items for skip in skips]


class _StopSignals:
    """Turns SIGTERM and SIGUSR1 into a flag the loop reads after each step (so the checkpoint is taken
    between steps, never inside one); restores the previous handlers on exit. Installed only in the main
    thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGTERM/SIGUSR1 to the main process, which stops them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class _Objective(nn.Module):
    """The model's clip loss as a module ``forward``, so DistributedDataParallel can wrap it."""

    def __init__(self, model: SlotModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, cls_attention: Tensor | None, shard: tuple[int, int]) -> ClipLoss:
        return self.model.clip_loss(features, cls_attention, shard)


def _precision(name: str, device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], Any]:
    """Autocast context and gradient scaler for ``train.precision`` (``fp32``, ``bf16``, ``fp16``)."""
    if name == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs CUDA (gradient scaling); use bf16 or fp32 on CPU")
    autocast: contextlib.AbstractContextManager[Any] = (
        torch.autocast(device.type, dtype=precision_dtype(name)) if name != "fp32" else contextlib.nullcontext()
    )
    return autocast, torch.amp.GradScaler(device.type, enabled=name == "fp16")


def _resume(
    ckpt: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
    max_steps: int,
) -> tuple[int, int, int]:
    """Load weights, optimizer, scheduler, gradient-scaler and RNG states; returns ``(step, epoch, batch_in_epoch)``."""
    path = ckpt.path or ckpt.extra.get("path", "the checkpoint")
    model.load_state_dict(ckpt.model, strict=True)
    if ckpt.optimizer is None and ckpt.extra.get("source") == "original-dinosavi":
        # as the original's own resume: its weights, a fresh optimizer and schedule from step 0
        log.info("fine-tuning the original DINOSAVi checkpoint %s from step 0 (fresh optimizer and schedule)", path)
        return 0, 0, 0
    if ckpt.optimizer is None:
        raise ValueError(f"{path} holds weights only; it cannot resume training")
    optimizer.load_state_dict(ckpt.optimizer)
    if ckpt.step >= max_steps:
        raise ValueError(f"{path} is at step {ckpt.step} >= train.max_steps={max_steps}; raise train.max_steps")
    if ckpt.scheduler is not None and ckpt.scheduler.get("total_steps") == max_steps:
        scheduler.load_state_dict(ckpt.scheduler)
    else:
        log.warning("train.max_steps differs from the checkpoint's schedule; the OneCycle schedule restarts at step %d",
                    ckpt.step)
        scheduler.last_epoch = ckpt.step
    if ckpt.extra.get("grad_scaler"):
        scaler.load_state_dict(ckpt.extra["grad_scaler"])
    if ckpt.rng is not None:
        restore_rng(ckpt.rng)
    log.info("resumed from %s at step %d", path, ckpt.step)
    return ckpt.step, int(ckpt.extra.get("epoch", 0)), int(ckpt.extra.get("batch_in_epoch", 0))
