"""The training loop, top to bottom: build, (resume), then encode clips, bind slots, step, log, save.

The frozen encoder runs on the training device in the main process, batched; data-loader workers
only decode and resize frames.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from dinosavi.build import build_encoder, build_model, build_train_dataset, resolve_device, resolve_split
from dinosavi.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from dinosavi.data.sampler import EpochSampler
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.models.dinosaur import dinosaur_clip_loss
from dinosavi.viz.overlay import mask_grid

__all__ = ["train"]

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path) -> Path:
    """Train the model described by ``cfg``; returns the path of the final checkpoint.

    Args:
        cfg: the resolved config (schema :class:`dinosavi.config.Config`).
        run_dir: where TensorBoard logs and ``checkpoints/`` go.
    """
    device = resolve_device(cfg.device)
    split = resolve_split(cfg.data, "train")
    size = (int(cfg.train.input_size[0]), int(cfg.train.input_size[1]))
    config_dict: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    encoder = build_encoder(cfg.encoder).to(device)
    model = build_model(cfg.model, encoder.feature_dim).to(device)
    rule = ResizeRule(size=size)
    dataset = build_train_dataset(cfg, split, encoder, rule)
    steps_per_epoch = len(dataset) // cfg.data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"data.batch_size={cfg.data.batch_size} is larger than the {len(dataset)} clips of "
            f"{cfg.data.root} ({split}); lower data.batch_size or raise data.clips_per_video"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.train.lr, total_steps=cfg.train.max_steps, pct_start=cfg.train.pct_start
    )
    log.info(
        "device=%s encoder=%s (D=%d, stride %d) input=%s split=%s clips=%d steps/epoch=%d params=%d",
        device, cfg.encoder.name, encoder.feature_dim, encoder.patch_size, size, split, len(dataset),
        steps_per_epoch, sum(p.numel() for p in model.parameters()),
    )

    step, epoch, batch_in_epoch = 0, 0, 0
    if cfg.resume:
        step, epoch, batch_in_epoch = _resume(Path(cfg.resume), model, optimizer, scheduler, cfg.train.max_steps)

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=step)
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.safetensors"

    def save(name: str) -> Path:
        extra = {"epoch": epoch, "batch_in_epoch": batch_in_epoch}
        path = save_checkpoint(
            ckpt_dir / f"{name}.safetensors", model, config_dict, step, optimizer, scheduler, capture_rng(), extra
        )
        save_checkpoint(last_path, model, config_dict, step, optimizer, scheduler, capture_rng(), extra)
        log.info("saved %s", path)
        return path

    model.train()
    columns = (TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task("train", total=cfg.train.max_steps, completed=step, loss=float("nan"))
            while step < cfg.train.max_steps:
                dataset.set_epoch(epoch)
                sampler = EpochSampler(len(dataset), cfg.seed, epoch, batch_in_epoch * cfg.data.batch_size)
                loader = DataLoader(
                    dataset, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=True,
                    num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                    generator=torch.Generator().manual_seed(cfg.seed + epoch),  # keeps the global RNG untouched
                )
                for batch in loader:
                    t0 = time.perf_counter()
                    clips, features = _features(batch, encoder, rule, cfg.encoder.batch_size, device)
                    B = clips.shape[0]
                    out = dinosaur_clip_loss(model, features)
                    if not torch.isfinite(out.loss):
                        raise FloatingPointError(
                            f"loss became {out.loss.item()} at step {step + 1}; the last good checkpoint is "
                            f"{last_path if last_path.exists() else 'none (no checkpoint saved yet)'}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    batch_in_epoch += 1
                    progress.update(task, completed=step, loss=out.loss.item())
                    if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
                        for name, value in out.logs.items():
                            writer.add_scalar(name, value.item(), step)
                        writer.add_scalar("loss/total", out.loss.item(), step)
                        writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                        writer.add_scalar("train/grad_norm", grad_norm.item(), step)
                        writer.add_scalar("train/clips_per_s", B / (time.perf_counter() - t0), step)
                        writer.add_image("masks", mask_grid(clips[0, 0], out.alpha[0, 0].detach()), step)
                    if step % cfg.train.save_every == 0 and step < cfg.train.max_steps:
                        save(f"step-{step:07d}")
                    if step >= cfg.train.max_steps:
                        break
                else:
                    epoch, batch_in_epoch = epoch + 1, 0
    except KeyboardInterrupt:
        log.warning("interrupted at step %d; saving", step)
        save(f"step-{step:07d}")
        writer.close()
        raise
    final = save(f"step-{step:07d}")
    writer.close()
    return final


def _features(
    batch: Tensor | dict[str, Tensor], encoder: FrozenEncoder, rule: ResizeRule, batch_size: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Frames ``(B, T, 3, H, W)`` uint8 and features ``(B, T, D, h, w)`` on ``device`` for one batch.

    A batch is either raw clips (encoded here, on the training device) or a dict of precomputed
    ``frames`` and ``features``.
    """
    if isinstance(batch, dict):
        return batch["frames"], batch["features"].to(device, non_blocking=True)
    B, T = batch.shape[:2]
    encoded = encoder.encode(batch.flatten(0, 1), rule, batch_size=batch_size)
    return batch, encoded.features.clone().unflatten(0, (B, T))  # clone: usable by autograd


def _resume(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, max_steps: int
) -> tuple[int, int, int]:
    """Load weights, optimizer, scheduler and RNG states; returns ``(step, epoch, batch_in_epoch)``."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt.model, strict=True)
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
    if ckpt.rng is not None:
        restore_rng(ckpt.rng)
    log.info("resumed from %s at step %d", path, ckpt.step)
    return ckpt.step, int(ckpt.extra.get("epoch", 0)), int(ckpt.extra.get("batch_in_epoch", 0))
