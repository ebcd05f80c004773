"""The training loop, top to bottom: build, (resume), then encode clips, bind slots, step, log, save.

The frozen encoder runs on the training device in the main process, batched; data-loader workers
only decode and resize frames.

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
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate
from torch.utils.tensorboard import SummaryWriter

from dinosavi.build import (
    build_encoder,
    build_model,
    build_train_dataset,
    ensure_dataset,
    resolve_device,
    resolve_split,
)
from dinosavi.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from dinosavi.data.badfiles import BadFileIndex, Skip, SkipLog
from dinosavi.data.sampler import EpochSampler
from dinosavi.data.videos import ClipIndex
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.models.slot_model import ClipLoss, SlotModel
from dinosavi.viz.overlay import mask_grid

__all__ = ["PRECISIONS", "STOP_SIGNALS", "train"]

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path) -> Path:
    """Train the model described by ``cfg``; returns the path of the final checkpoint.

    Args:
        cfg: the resolved config (schema :class:`dinosavi.config.Config`).
        run_dir: where TensorBoard logs and ``checkpoints/`` go (rank 0 only).

    Raises:
        SystemExit: status ``128 + signal`` after SIGTERM or SIGUSR1, once a resumable checkpoint is saved.
        KeyboardInterrupt: after Ctrl-C, once a resumable checkpoint is saved.
    """
    ddp = _Distributed.from_env()
    try:
        return _train(cfg, run_dir, ddp)
    finally:
        if ddp.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: DictConfig, run_dir: Path, ddp: _Distributed) -> Path:
    device = resolve_device(cfg.device)
    if ddp.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    ddp.init(device)
    autocast, scaler = _precision(cfg.train.precision, device)
    split = resolve_split(cfg.data, "train")
    size = (int(cfg.train.input_size[0]), int(cfg.train.input_size[1]))
    config_dict: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    ensure_dataset(cfg.data)  # a wrong data.root fails before the encoder's weights are fetched
    encoder = build_encoder(cfg.encoder).to(device)
    if cfg.model.bgfg and encoder.num_heads is None:
        raise ValueError(
            f"preset `{cfg.preset}` uses background/foreground slot groups (model.bgfg=true), which need the "
            f"encoder's CLS attention; encoder `{cfg.encoder.name}` has none: use a ViT encoder "
            f"(e.g. encoder=dino_vits8) or set model.bgfg=false"
        )
    model = build_model(cfg.model, encoder.feature_dim).to(device)
    objective: nn.Module = _Objective(model)
    if ddp.world_size > 1:
        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
    rule = ResizeRule(size=size)
    bad_files = BadFileIndex(cfg.data.root)
    dataset = build_train_dataset(cfg, split, encoder, rule, known_bad=bad_files.load())
    skipped = SkipLog(cfg.data.root, dataset.num_found, cfg.data.max_bad_fraction, bad_files)
    skipped.add(dataset.take_skips())
    if skipped.over_limit:
        raise skipped.error()
    global_batch = cfg.data.batch_size
    if global_batch % ddp.world_size:
        raise ValueError(f"data.batch_size={global_batch} (the global batch) must be divisible by the "
                         f"{ddp.world_size} processes")
    batch_size = global_batch // ddp.world_size
    steps_per_epoch = len(dataset) // global_batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"data.batch_size={cfg.data.batch_size} is larger than the {len(dataset)} clips of "
            f"{cfg.data.root} ({split}); lower data.batch_size or raise data.clips_per_video"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.train.lr, total_steps=cfg.train.max_steps, pct_start=cfg.train.pct_start
    )
    max_norm = float("inf") if cfg.train.grad_clip is None else cfg.train.grad_clip
    log.info(
        "device=%s encoder=%s (D=%d, stride %d) input=%s split=%s clips=%d steps/epoch=%d params=%d "
        "precision=%s processes=%d batch=%d per process",
        device, cfg.encoder.name, encoder.feature_dim, encoder.patch_size, size, split, len(dataset),
        steps_per_epoch, sum(p.numel() for p in model.parameters()), cfg.train.precision, ddp.world_size,
        batch_size,
    )

    step, epoch, batch_in_epoch = 0, 0, 0
    if cfg.resume:
        step, epoch, batch_in_epoch = _resume(
            Path(cfg.resume), model, optimizer, scheduler, scaler, cfg.train.max_steps
        )

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=step) if ddp.rank == 0 else None
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.safetensors"

    saved_at = -1

    def save(name: str) -> Path:
        nonlocal saved_at
        path = ckpt_dir / f"{name}.safetensors"
        if ddp.rank != 0 or saved_at == step:
            return path
        saved_at = step
        extra = {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "grad_scaler": scaler.state_dict()}
        save_checkpoint(path, model, config_dict, step, optimizer, scheduler, capture_rng(), extra)
        save_checkpoint(last_path, model, config_dict, step, optimizer, scheduler, capture_rng(), extra)
        log.info("saved %s", path)
        return path

    model.train()
    stopped: signal.Signals | None = None
    columns = (TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with _StopSignals() as stop, Progress(*columns, transient=False, disable=ddp.rank != 0) as progress:
            task = progress.add_task("train", total=cfg.train.max_steps, completed=step, loss=float("nan"))
            while step < cfg.train.max_steps:
                dataset.set_epoch(epoch)
                sampler = EpochSampler(
                    len(dataset), cfg.seed, epoch, batch_in_epoch * global_batch,
                    rank=ddp.rank, world_size=ddp.world_size, batch_size=batch_size,
                )
                loader = DataLoader(
                    _WithSkips(dataset), batch_size=batch_size, sampler=sampler, drop_last=True,
                    collate_fn=_collate_with_skips,
                    num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                    generator=torch.Generator().manual_seed(cfg.seed + epoch),  # keeps the global RNG untouched
                    worker_init_fn=_ignore_stop_signals,
                )
                for batch, skips in loader:
                    t0 = time.perf_counter()
                    for skip in skipped.add(skips):
                        dataset.mark_bad(skip, report=False)  # found in a worker: later epochs skip it too
                    clips, features, cls_attention = _features(batch, encoder, rule, cfg.encoder.batch_size, device)
                    with autocast:
                        out: ClipLoss = objective(features, cls_attention, (ddp.rank, ddp.world_size))
                    logs = ddp.mean({"loss/total": out.loss.detach(), **out.logs})
                    if not torch.isfinite(logs["loss/total"]):
                        raise FloatingPointError(
                            f"loss became {logs['loss/total'].item()} at step {step + 1}; the last good "
                            f"checkpoint is {last_path if last_path.exists() else 'none (no checkpoint saved yet)'}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(out.loss).backward()
                    scaler.unscale_(optimizer)
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    step += 1
                    batch_in_epoch += 1
                    progress.update(task, completed=step, loss=logs["loss/total"].item())
                    logging_step = step % cfg.train.log_every == 0 or step == cfg.train.max_steps
                    if writer is not None and logging_step:
                        for name, value in logs.items():
                            writer.add_scalar(name, value.item(), step)
                        writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                        writer.add_scalar("train/grad_norm", grad_norm.item(), step)
                        writer.add_scalar("train/clips_per_s", global_batch / (time.perf_counter() - t0), step)
                        writer.add_scalar("data/skipped_videos", skipped.count, step)
                        writer.add_image("masks", mask_grid(clips[0, 0], out.alpha[0, 0].detach().float()), step)
                    if step % cfg.train.save_every == 0 and step < cfg.train.max_steps:
                        save(f"step-{step:07d}")
                    if step >= cfg.train.max_steps:
                        break
                    stop_now, too_many_bad = ddp.any(stop.received is not None, skipped.over_limit)
                    if too_many_bad:
                        save(f"step-{step:07d}")
                        raise skipped.error(f"; training stopped at step {step} (continue with resume={last_path})")
                    if stop_now:
                        stopped = stop.received or signal.SIGTERM  # None: a signal reached another process
                        break
                else:
                    epoch, batch_in_epoch = epoch + 1, 0
                if stopped is not None:
                    break
    except KeyboardInterrupt:
        log.warning("interrupted at step %d; saving", step)
        save(f"step-{step:07d}")
        if writer is not None:
            writer.close()
        raise
    final = save(f"step-{step:07d}")
    if writer is not None:
        writer.close()
    if skipped.count:
        log.warning("skipped %d of %d videos of %s as unreadable (listed in %s)", skipped.count, skipped.num_videos,
                    cfg.data.root, bad_files.path)
    if stopped is not None:
        log.warning("received %s: stopped at step %d of %d and saved %s; continue with resume=%s",
                    stopped.name, step, cfg.train.max_steps, final, last_path)
        raise SystemExit(128 + stopped)
    return final


class _WithSkips(Dataset):
    """The items of ``dataset``, each with the skips found while reading it, so that the main process
    learns about unreadable files that data-loader workers met."""

    def __init__(self, dataset: ClipIndex) -> None:
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


@dataclass
class _Distributed:
    """This process's place in a ``torchrun`` launch (``world_size`` 1 without one)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls) -> _Distributed:
        """Read ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set by torchrun."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)

    def init(self, device: torch.device) -> None:
        """Join the process group (NCCL on CUDA, gloo on CPU) when launched with several processes."""
        self.device = device
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            log.info("process %d of %d (%s)", self.rank, self.world_size, dist.get_backend())

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Whether each flag is set in any process (one all-reduce under torchrun), so all act at one step."""
        if self.world_size == 1:
            return flags
        values = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def mean(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Scalars averaged over the processes (one all-reduce), detached, as float32."""
        stacked = torch.stack([v.detach().float() for v in values.values()])
        if self.world_size > 1:
            dist.all_reduce(stacked)
            stacked /= self.world_size
        return dict(zip(values, stacked))


def _precision(name: str, device: torch.device) -> tuple[contextlib.AbstractContextManager[Any], Any]:
    """Autocast context and gradient scaler for ``train.precision`` (``fp32``, ``bf16``, ``fp16``)."""
    if name not in PRECISIONS:
        raise ValueError(f"Unknown train.precision `{name}`; expected one of {sorted(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs CUDA (gradient scaling); use bf16 or fp32 on CPU")
    autocast: contextlib.AbstractContextManager[Any] = (
        torch.autocast(device.type, dtype=PRECISIONS[name]) if name != "fp32" else contextlib.nullcontext()
    )
    return autocast, torch.amp.GradScaler(device.type, enabled=name == "fp16")


def _features(
    batch: Tensor | dict[str, Tensor], encoder: FrozenEncoder, rule: ResizeRule, batch_size: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Frames ``(B, T, 3, H, W)`` uint8, features ``(B, T, D, h, w)`` and CLS attention
    ``(B, T, heads, h, w)`` (None when the encoder has none) on ``device`` for one batch.

    A batch is either raw clips (encoded here, on the training device) or a dict of precomputed
    ``frames``, ``features`` and optionally ``cls_attention``.
    """
    if isinstance(batch, dict):
        cls_attention = batch.get("cls_attention")
        return (batch["frames"], batch["features"].to(device, non_blocking=True),
                None if cls_attention is None else cls_attention.to(device, non_blocking=True))
    B, T = batch.shape[:2]
    encoded = encoder.encode(batch.flatten(0, 1), rule, batch_size=batch_size)
    attention = encoded.cls_attention
    return (batch, encoded.features.clone().unflatten(0, (B, T)),  # clone: usable by autograd
            None if attention is None else attention.clone().unflatten(0, (B, T)))


def _resume(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, max_steps: int
) -> tuple[int, int, int]:
    """Load weights, optimizer, scheduler, gradient-scaler and RNG states; returns ``(step, epoch, batch_in_epoch)``."""
    ckpt = load_checkpoint(path)
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
