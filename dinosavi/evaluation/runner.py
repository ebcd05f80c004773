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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain, tee
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from rich.progress import Progress
from torch import Tensor

from dinosavi.atomic import remove_on_failure
from dinosavi.build import (
    build_encoder,
    build_model,
    build_sequences,
    ensure_dataset,
    resolve_device,
    resolve_split,
)
from dinosavi.checkpoint import Checkpoint
from dinosavi.data.davis import Sequence, SequenceDataset, write_palette_png
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.evaluation.vos import segment_sequence
from dinosavi.features.digests import file_digest
from dinosavi.features.space import FeatureSpace, Resolution
from dinosavi.features.store import FeatureStore
from dinosavi.metrics.davis import VOID_LABEL, evaluate_semisupervised
from dinosavi.metrics.matching import match_segments
from dinosavi.metrics.objects import discovery_scores, fg_ari_per_frame
from dinosavi.metrics.results import DiscoveryTable, ScoreTable, format_table
from dinosavi.models.background import background_mask
from dinosavi.viz.outputs import RunOutputs, save_jpeg, write_slot_maps
from dinosavi.viz.overlay import overlay

__all__ = ["evaluate_checkpoint", "frame_features", "frame_outputs", "run_sequences", "write_sequence"]

log = logging.getLogger(__name__)

BACKGROUND_MASKS = ("first_frame", "every_frame")


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
    save_jpeg(path, overlay(frame, labels, palette), quality=90)


def frame_outputs(
    encoder: FrozenEncoder, frames: Tensor, rule: ResizeRule, batch_size: int,
    space: FeatureSpace | None = None, paths: list[Path] | None = None, name: str = "sequence",
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Per-frame features ``(D, h, w)`` and CLS attention ``(heads, h, w)`` (None without a CLS token) of
    ``frames: (T, 3, H, W)`` uint8, encoded ``batch_size`` at a time.

    With a feature-store ``space`` (of ``rule``, see ``features.store``) and the frames' source files
    ``paths``, the sequence ``name`` is read from the store; when absent or corrupt it is encoded and
    written back.
    """
    if space is not None:
        if paths is None or len(paths) != len(frames):
            raise ValueError(f"{name}: the feature store needs one source path per frame, got {paths}")
        stored, _ = space.get(name, [file_digest(p) for p in paths], lambda: frames)
        chunks: Iterable[tuple[Tensor, Tensor | None]] = [(stored.features, stored.cls_attention)]
    else:
        chunks = ((out.features, out.cls_attention) for out in
                  (encoder.encode(chunk, rule, batch_size) for chunk in frames.split(batch_size)))
    for features, attention in chunks:
        for t in range(len(features)):
            yield features[t], None if attention is None else attention[t]


def frame_features(
    encoder: FrozenEncoder, frames: Tensor, rule: ResizeRule, batch_size: int,
    space: FeatureSpace | None = None, paths: list[Path] | None = None, name: str = "sequence",
) -> Iterator[Tensor]:
    """Per-frame features ``(D, h, w)`` only; arguments as in :func:`frame_outputs`."""
    for features, _ in frame_outputs(encoder, frames, rule, batch_size, space, paths, name):
        yield features


def evaluate_checkpoint(ckpt: Checkpoint, cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    """Evaluation of a checkpoint on an annotated split: lock-on (``eval.lock_on``) or unsupervised.

    The model is rebuilt from ``cfg.model``/``cfg.encoder`` (the checkpoint's, see
    :func:`dinosavi.modes.checkpoint_config`) and loaded strictly; data and options come from
    ``cfg.data`` and ``cfg.eval``. Slot initialisation draws from a generator seeded with ``cfg.seed``
    per sequence, so repeated runs give the same masks.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV; unsupervised runs add
        ``FG-ARI``, ``mBO``, ``mIoU`` and their frame-level variants).
    """
    device = resolve_device(cfg.device)
    encoder = build_encoder(cfg.encoder).to(device)
    wanted = ckpt.extra.get("feature_dim")
    if wanted is not None and wanted != encoder.feature_dim:
        raise ValueError(f"{ckpt.extra.get('path', 'the checkpoint')} takes {wanted}-d features; encoder "
                         f"`{cfg.encoder.name}` gives {encoder.feature_dim}: set encoder.name=... to a {wanted}-d ViT")
    model = build_model(cfg.model, encoder.feature_dim).to(device)
    model.load_state_dict(ckpt.model, strict=True)
    model.eval()
    opts = cfg.eval
    if opts.background_mask not in BACKGROUND_MASKS:
        raise ValueError(f"Unknown eval.background_mask `{opts.background_mask}`; expected one of {BACKGROUND_MASKS}")
    every_frame = opts.background_mask == "every_frame"
    if every_frame and encoder.num_heads is None:
        raise ValueError(f"eval.background_mask=every_frame restricts the background slots to each frame's "
                         f"CLS-attention background; encoder `{cfg.encoder.name}` has no CLS token: use a ViT "
                         f"encoder or eval.background_mask=first_frame")
    if opts.lock_on and opts.num_extra_slots > 0 and encoder.num_heads is None:
        raise ValueError(
            f"eval.num_extra_slots needs the CLS-attention background of the first frame (eval.num_extra_slots="
            f"{opts.num_extra_slots}); encoder `{cfg.encoder.name}` has no CLS token: use a ViT encoder or "
            f"eval.num_extra_slots=0"
        )
    if not Path(cfg.data.root).exists():
        ensure_dataset(cfg.data)  # the synthetic set is generated on first use; an existing folder is read as is
    split = resolve_split(cfg.data, "eval")
    dataset = build_sequences(cfg.data, split)
    protocol = "semi" if opts.lock_on else "unsupervised"
    num_slots = None if opts.num_slots is None else _slot_count(opts.num_slots)
    if not opts.lock_on:
        count = model.num_slots if num_slots is None else num_slots
        segments = count if isinstance(count, int) else sum(count)
        if segments > cfg.score.max_proposals:
            raise ValueError(f"lock_on=false makes every slot a segment: {segments} slots exceed the DAVIS "
                             f"unsupervised protocol's score.max_proposals={cfg.score.max_proposals}")
    log.info("evaluating %s (step %d, %s) on %s/%s: %d sequences", cfg.preset, ckpt.step, protocol, cfg.data.root,
             split, len(dataset))

    rule = ResizeRule(short_side=opts.short_side, multiple_of=encoder.patch_size)
    space = None
    if cfg.features.store:
        store = FeatureStore(cfg.features.store, cfg.features.dtype)
        space = FeatureSpace(store, encoder, Resolution(rule), cfg.encoder.batch_size)
    # the CLS-attention background of the first frame: extra slots, and slot groups without lock-on
    wants_background = every_frame or (opts.num_extra_slots > 0 if opts.lock_on else model.slot_init.num_groups == 2)

    def segment(seq: Sequence) -> tuple[Tensor, Tensor | None]:
        assert seq.labels is not None
        outputs = frame_outputs(encoder, seq.frames, rule, cfg.encoder.batch_size, space,
                                dataset.frame_paths(seq.name), seq.name)
        first, cls_attention = next(outputs)  # the first frame's CLS attention locates the background
        background = None
        if wants_background and cls_attention is not None:
            background = background_mask(cls_attention[None])[0]
        later = None
        if every_frame:  # each later frame's CLS background, encoded once with its features
            outputs, with_cls = tee(outputs)
            later = (background_mask(a[None])[0] for _, a in with_cls if a is not None)
        result = segment_sequence(
            model,
            chain([first], (features for features, _ in outputs)),
            seq.labels[0] if opts.lock_on else None,
            size=(seq.frames.shape[-2], seq.frames.shape[-1]),
            lock_on=opts.lock_on, num_bg_slots=opts.num_bg_slots, slots_per_class=opts.slots_per_class,
            num_extra_slots=opts.num_extra_slots, num_slots=num_slots, background=background,
            later_backgrounds=later, label_sampling=opts.label_sampling, output=opts.output,
            num_iters=opts.num_iters, ini_iters=opts.ini_iters,
            track_mode=opts.track_mode, track_temperature=opts.track_temperature,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return result.labels, result.masks if opts.output == "slot" else None

    title = f"{'Lock-on' if opts.lock_on else 'Unsupervised'} evaluation of {cfg.preset} (step {ckpt.step}) on {split}"
    return run_sequences(dataset, segment, out_dir, split, title, opts, f"encoder {cfg.encoder.name}; "
                         f"eval {dict(opts)}", protocol=protocol, max_proposals=cfg.score.max_proposals)


def _slot_count(value: object) -> int | list[int]:
    """``eval.num_slots`` as an int or a ``[bg, fg]`` list."""
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, ListConfig | list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return [int(v) for v in value]
    raise ValueError(f"eval.num_slots must be a positive integer or [bg, fg], got {value}")


def run_sequences(
    dataset: SequenceDataset,
    segment: Callable[[Sequence], tuple[Tensor, Tensor | None]],
    out_dir: Path,
    split: str,
    title: str,
    options: DictConfig,
    details: str,
    protocol: str = "semi",
    max_proposals: int = 20,
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
        protocol: ``semi`` (ids are the first frame's objects) or ``unsupervised`` (ids are segments,
            Hungarian-matched to the objects on J&F; FG-ARI, mBO and mIoU are added, see
            :class:`dinosavi.metrics.results.DiscoveryTable`).
        max_proposals: the most segments the unsupervised protocol allows.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV, plus the discovery
        scores with ``unsupervised``).

    Raises:
        Whatever reading or segmenting a sequence raises (a missing frame, a mask of the wrong size or
        mode, ...); the files this run wrote under ``out_dir`` are removed first, so a failed run
        leaves no partial results.
    """
    with remove_on_failure(out_dir):
        return _run_sequences(dataset, segment, out_dir, split, title, options, details, protocol, max_proposals)


def _run_sequences(
    dataset: SequenceDataset,
    segment: Callable[[Sequence], tuple[Tensor, Tensor | None]],
    out_dir: Path,
    split: str,
    title: str,
    options: DictConfig,
    details: str,
    protocol: str,
    max_proposals: int,
) -> dict[str, float]:
    table, discovery = ScoreTable(), DiscoveryTable()
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
            if protocol == "semi":
                scores = evaluate_semisupervised(seq.labels, predicted)
                j, f = scores.j, scores.f
            else:
                matched = match_segments(seq.labels, predicted, max_proposals=max_proposals)
                j, f = matched.j, matched.f
                truth = torch.where(seq.labels == VOID_LABEL, 0, seq.labels)
                discovery.add(seq.name, discovery_scores(truth, predicted), fg_ari_per_frame(truth, predicted))
            table.add(seq.name, j, f)
            pending += outputs.add(seq, labels, j, f, pool)
            if slot_maps is not None:
                pending += write_slot_maps(out_dir, seq, slot_maps, pool)
            frames_done += len(labels)
            progress.advance(task)
        for future in pending:
            future.result()
    seconds = time.perf_counter() - t0
    log.info("segmented %d frames in %.1f s (%.2f frames/s)", frames_done, seconds, frames_done / seconds)
    table.write(out_dir, split)
    means = table.global_means()
    lines = [details, f"{frames_done} frames in {seconds:.1f} s ({frames_done / seconds:.2f} frames/s)"]
    if protocol != "semi":
        discovery.write(out_dir, split)
        found = discovery.global_means()
        means |= found
        lines.append("object discovery: " + ", ".join(f"{k} {v:.3f}" for k, v in found.items()))
    report = outputs.finish(table.global_means(), lines)
    print(format_table(table))
    if protocol != "semi":
        print(lines[-1])
    if report is not None:
        print(f"report: {report}")
    return means
