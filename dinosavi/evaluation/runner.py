"""The DAVIS evaluation runner: segment every sequence of a split, write DAVIS-format results, score them.

Output layout under ``out_dir``: ``results/<seq>/<frame>.png`` (palette PNGs, pixel = object id, the
annotations' names and size), ``overlays/<seq>/<frame>.jpg``, and the official
``global_results-<split>.csv`` / ``per-sequence_results-<split>.csv`` plus ``metrics-<split>.json``;
``videos/<seq>.mp4``, ``report.html``, TensorBoard overlays in ``tb/`` and, with ``eval.output=slot``,
``slots/<seq>/<frame>.jpg`` (see :mod:`dinosavi.viz.outputs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from rich.progress import Progress
from torch import Tensor

from dinosavi.build import build_encoder, build_model, ensure_dataset, resolve_device, resolve_split
from dinosavi.checkpoint import Checkpoint
from dinosavi.data.davis import DavisDataset, Sequence, write_palette_png
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.evaluation.vos import segment_sequence
from dinosavi.features.store import FeatureSpace, FeatureStore, Resolution, file_digest
from dinosavi.metrics.davis import evaluate_semisupervised
from dinosavi.metrics.results import ScoreTable, format_table
from dinosavi.viz.outputs import RunOutputs, write_slot_maps
from dinosavi.viz.overlay import overlay

__all__ = ["evaluate_checkpoint", "frame_features", "run_sequences", "write_sequence"]

log = logging.getLogger(__name__)


def write_sequence(
    out_dir: Path, seq: Sequence, labels: np.ndarray, overlays: bool, pool: ThreadPoolExecutor
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
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(overlay(frame, labels, palette)).save(tmp, format="JPEG", quality=90)
    tmp.replace(path)


def frame_features(
    encoder: FrozenEncoder, frames: Tensor, rule: ResizeRule, batch_size: int,
    space: FeatureSpace | None = None, paths: list[Path] | None = None, name: str = "sequence",
) -> Iterator[Tensor]:
    """Per-frame features ``(D, h, w)`` of ``frames: (T, 3, H, W)`` uint8, encoded ``batch_size`` at a time.

    With a feature-store ``space`` (of ``rule``, see ``features.store``) and the frames' source files
    ``paths``, the sequence ``name`` is read from the store; when absent or corrupt it is encoded and
    written back.
    """
    if space is not None:
        if paths is None or len(paths) != len(frames):
            raise ValueError(f"{name}: the feature store needs one source path per frame, got {paths}")
        stored, _ = space.get(name, [file_digest(p) for p in paths], lambda: frames)
        yield from stored.features
        return
    for chunk in frames.split(batch_size):
        yield from encoder.encode(chunk, rule, batch_size).features


def evaluate_checkpoint(ckpt: Checkpoint, cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    """Semi-supervised evaluation of a checkpoint on a DAVIS-layout split.

    The model is rebuilt from ``cfg.model``/``cfg.encoder`` (the checkpoint's, see
    :func:`dinosavi.modes.checkpoint_config`) and loaded strictly; data and options come from
    ``cfg.data`` and ``cfg.eval``. Slot initialisation draws from a generator seeded with ``cfg.seed``
    per sequence, so repeated runs give the same masks.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV).
    """
    device = resolve_device(cfg.device)
    encoder = build_encoder(cfg.encoder).to(device)
    model = build_model(cfg.model, encoder.feature_dim).to(device)
    model.load_state_dict(ckpt.model, strict=True)
    model.eval()
    if not Path(cfg.data.root).exists():
        ensure_dataset(cfg.data)  # the synthetic set is generated on first use; an existing folder is read as is
    split = resolve_split(cfg.data, "eval")
    dataset = DavisDataset(cfg.data.root, split, year=cfg.data.year, quality=cfg.data.quality)
    log.info("evaluating %s (step %d) on %s/%s: %d sequences", cfg.preset, ckpt.step, cfg.data.root, split,
             len(dataset))

    rule = ResizeRule(short_side=cfg.eval.short_side, multiple_of=encoder.patch_size)
    space = None
    if cfg.features.store:
        store = FeatureStore(cfg.features.store, cfg.features.dtype)
        space = FeatureSpace(store, encoder, Resolution(rule), cfg.encoder.batch_size)
    def segment(seq: Sequence) -> tuple[Tensor, Tensor | None]:
        assert seq.labels is not None
        result = segment_sequence(
            model,
            frame_features(encoder, seq.frames, rule, cfg.encoder.batch_size, space,
                           dataset.frame_paths(seq.name), seq.name),
            seq.labels[0],
            num_bg_slots=cfg.eval.num_bg_slots, slots_per_class=cfg.eval.slots_per_class,
            output=cfg.eval.output, num_iters=cfg.eval.num_iters, ini_iters=cfg.eval.ini_iters,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return result.labels, result.masks if cfg.eval.output == "slot" else None

    title = f"Lock-on evaluation of {cfg.preset} (step {ckpt.step}) on {split}"
    return run_sequences(dataset, segment, out_dir, split, title, cfg.eval, f"encoder {cfg.encoder.name}; "
                         f"eval {dict(cfg.eval)}")


def run_sequences(
    dataset: DavisDataset,
    segment: Callable[[Sequence], tuple[Tensor, Tensor | None]],
    out_dir: Path,
    split: str,
    title: str,
    options: DictConfig,
    details: str,
) -> dict[str, float]:
    """The loop shared by ``eval`` and ``propagate``: segment, score and write every sequence.

    Args:
        dataset: the annotated split.
        segment: a sequence -> predicted ids ``(T, H, W)`` and optional slot maps ``(T, S, h, w)``.
        out_dir: where PNGs, overlays, videos, CSVs, JSON and ``report.html`` go.
        split: the split name used in the CSV names.
        title: the report's title.
        options: ``cfg.eval`` (``overlays``, ``videos``, ``report``).
        details: a line about the method for the report.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV).
    """
    table = ScoreTable()
    pending: list[Future[None]] = []
    outputs = RunOutputs(out_dir, title, videos=options.videos, report=options.report)
    frames_done, t0 = 0, time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool, Progress(transient=True) as progress:
        task = progress.add_task("segment", total=len(dataset))
        for index in range(len(dataset)):
            seq = dataset[index]
            assert seq.labels is not None
            predicted, slot_maps = segment(seq)
            labels = predicted.numpy().astype(np.uint8)
            pending += write_sequence(out_dir, seq, labels, options.overlays, pool)
            scores = evaluate_semisupervised(seq.labels, predicted)
            table.add(seq.name, scores.j, scores.f)
            pending += outputs.add(seq, labels, scores.j, scores.f, pool)
            if slot_maps is not None:
                pending += write_slot_maps(out_dir, seq, slot_maps, pool)
            frames_done += len(labels)
            progress.advance(task)
        for future in pending:
            future.result()
    seconds = time.perf_counter() - t0
    log.info("segmented %d frames in %.1f s (%.2f frames/s)", frames_done, seconds, frames_done / seconds)
    table.write(out_dir, split)
    report = outputs.finish(table.global_means(), [
        details, f"{frames_done} frames in {seconds:.1f} s ({frames_done / seconds:.2f} frames/s)",
    ])
    print(format_table(table))
    if report is not None:
        print(f"report: {report}")
    return table.global_means()
