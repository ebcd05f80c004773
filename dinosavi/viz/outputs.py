"""The files of an evaluation run besides its scores.

Shared by ``mode=eval`` (lock-on) and ``mode=propagate``::

    <out_dir>/results/<seq>/<frame>.png   palette PNGs, pixel = object id (the annotations' names and size)
    <out_dir>/overlays/<seq>/<frame>.jpg  the predictions blended over the frames
    <out_dir>/videos/<seq>.mp4        overlays as a video (PyAV)
    <out_dir>/slots/<seq>/<frame>.jpg per-slot masks on the frame (lock-on with eval.output=slot)
    <out_dir>/tb/                     TensorBoard: a few overlay frames per sequence
    <out_dir>/report.html             self-contained report (scores, J&F chart, thumbnails)

Shapes: ``T`` frames, ``S`` slots, ``H, W`` pixels, ``h, w`` feature grid.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from dinosavi.atomic import atomic_path
from dinosavi.data.davis import VideoSequence, write_palette_png
from dinosavi.viz.overlay import mask_grid, overlay, stretch_maps
from dinosavi.viz.report import SequenceEntry, overlay_thumbnails, spread, write_report
from dinosavi.viz.video import write_overlay_video

__all__ = ["RunOutputs", "save_jpeg", "write_sequence", "write_slot_maps"]


def save_jpeg(path: Path, image: np.ndarray, quality: int = 85) -> None:
    """Save an ``(H, W, 3)`` uint8 RGB image as a JPEG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=quality)


def write_sequence(
    out_dir: Path, seq: VideoSequence, labels: np.ndarray, overlays: bool, pool: ThreadPoolExecutor
) -> list[Future[None]]:
    """Queue a sequence's palette PNGs (and overlay JPEGs) on a thread pool.

    Args:
        out_dir: the evaluation folder.
        seq: the sequence (frames, palette, frame names).
        labels: ``(T, H, W)`` uint8 predicted ids.
        overlays: also write blended overlays.
        pool: the writer threads.

    Returns:
        The pending writes; call ``result()`` on each to surface errors.
    """
    results = out_dir / "results" / seq.name
    results.mkdir(parents=True, exist_ok=True)
    futures = [pool.submit(write_palette_png, results / f"{n}.png", labels[t], seq.palette)
               for t, n in enumerate(seq.frame_names)]
    if overlays:
        frames = seq.frames.permute(0, 2, 3, 1).numpy()
        (out_dir / "overlays" / seq.name).mkdir(parents=True, exist_ok=True)
        futures += [pool.submit(_write_overlay, out_dir / "overlays" / seq.name / f"{n}.jpg", frames[t], labels[t],
                                seq.palette) for t, n in enumerate(seq.frame_names)]
    return futures


def _write_overlay(path: Path, frame: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> None:
    save_jpeg(path, overlay(frame, labels, palette), quality=90)


def write_slot_maps(out_dir: Path, seq: VideoSequence, masks: Tensor, pool: ThreadPoolExecutor) -> list[Future[None]]:
    """Queue ``slots/<seq>/<frame>.jpg``: the frame, then each slot's mask (stretched to its own range,
    :func:`dinosavi.viz.overlay.stretch_maps`) multiplied onto it.

    Args:
        out_dir: the evaluation folder.
        seq: the sequence (frames and frame names).
        masks: ``(T, S, h, w)`` in [0, 1], e.g. ``SegmentResult.masks``.
        pool: the writer threads.
    """
    if len(masks) != len(seq.frame_names):
        raise ValueError(f"{seq.name}: {len(masks)} slot masks for {len(seq.frame_names)} frames")
    folder = out_dir / "slots" / seq.name
    folder.mkdir(parents=True, exist_ok=True)

    def write(t: int) -> None:
        grid = mask_grid(seq.frames[t], stretch_maps(masks[t])).permute(1, 2, 0).numpy()
        save_jpeg(folder / f"{seq.frame_names[t]}.jpg", grid)

    return [pool.submit(write, t) for t in range(len(masks))]


class RunOutputs:
    """Collects per-sequence videos, TensorBoard images and report rows; writes ``report.html`` at the end.

    Args:
        out_dir: the evaluation folder.
        title: the report's title.
        videos: write ``videos/<seq>.mp4``.
        report: write ``report.html`` (thumbnails are made only then).
        tensorboard_frames: overlay frames per sequence logged to ``tb/`` (0: no TensorBoard).
    """

    def __init__(self, out_dir: Path, title: str, *, videos: bool = True, report: bool = True,
                 tensorboard_frames: int = 3) -> None:
        self.out_dir, self.title = Path(out_dir), title
        self.videos, self.report, self.tensorboard_frames = videos, report, tensorboard_frames
        self.entries: list[SequenceEntry] = []
        self.writer = SummaryWriter(str(self.out_dir / "tb")) if tensorboard_frames > 0 else None

    def add(self, seq: VideoSequence, labels: np.ndarray, j: Tensor, f: Tensor,
            pool: ThreadPoolExecutor) -> list[Future]:
        """Queue the video of a sequence, log its overlays, and keep its report row.

        Args:
            seq: the sequence (frames, palette, name).
            labels: ``(T, H, W)`` uint8 predicted ids.
            j: ``(K, T')`` per-object, per-frame J of the sequence.
            f: ``(K, T')`` F.
            pool: the writer threads.

        Returns:
            The pending writes.
        """
        futures: list[Future] = []
        video = None
        if self.videos:
            video = f"videos/{seq.name}.mp4"
            futures.append(pool.submit(write_overlay_video, self.out_dir / video, seq.frames, labels, seq.palette))
        if self.writer is not None:
            for t in spread(len(labels), self.tensorboard_frames):
                image = overlay(seq.frames[t].permute(1, 2, 0).numpy(), labels[t], seq.palette)
                self.writer.add_image(f"overlays/{seq.name}", image, t, dataformats="HWC")
        if self.report:
            self.entries.append(SequenceEntry(
                name=seq.name, num_frames=len(labels), j_mean=_mean(j), f_mean=_mean(f),
                thumbnails=overlay_thumbnails(seq.frames, labels, seq.palette), video=video,
            ))
        return futures

    def finish(self, global_scores: dict[str, float], notes: list[str] | None = None) -> Path | None:
        """Close TensorBoard and write ``report.html``; returns its path (None when reports are off)."""
        if self.writer is not None:
            self.writer.close()
        if not self.report or not self.entries:
            return None
        return write_report(self.out_dir / "report.html", self.title, self.entries, global_scores, notes)


def _mean(scores: Tensor) -> float:
    """Mean over objects of each object's mean over frames (nan when there are none)."""
    if scores.numel() == 0:
        return math.nan
    return float(scores.double().mean(dim=1).mean())
