"""The DAVIS evaluation runner: segment every sequence of a split, write DAVIS-format results, score them.

:func:`evaluate_slots` evaluates a slot model (``mode=eval``), :func:`evaluate_propagation` label propagation
(``mode=propagate``); :func:`run_sequences` is the loop they share. Both take built objects: the front door
(:mod:`dinosavi.cli.modes`) loads the checkpoint, builds the model, the encoder's :class:`FeatureSource` and
the dataset, and turns ``cfg.eval`` into :class:`EvalOptions`.

Output layout under ``out_dir``: ``results/<seq>/<frame>.png`` (palette PNGs, pixel = object id, the
annotations' names and size), ``overlays/<seq>/<frame>.jpg``, and the official
``global_results-<split>.csv`` / ``per-sequence_results-<split>.csv`` plus ``metrics-<split>.json``;
``videos/<seq>.mp4``, ``report.html``, TensorBoard overlays in ``tb/`` and, with ``eval.output=slot``,
``slots/<seq>/<frame>.jpg`` (see :mod:`dinosavi.viz.outputs`, :mod:`dinosavi.evaluation.tables`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor

from dinosavi.atomic import remove_on_failure
from dinosavi.data.davis import SequenceDataset, VideoSequence
from dinosavi.evaluation.options import EvalOptions, PropagationParams
from dinosavi.evaluation.propagate import DINO, propagate_sequence
from dinosavi.evaluation.tables import format_table, write_discovery_files, write_score_files
from dinosavi.evaluation.vos import collect, segment_stream
from dinosavi.features.source import FeatureSource
from dinosavi.metrics.davis import evaluate_semisupervised
from dinosavi.metrics.matching import match_segments
from dinosavi.metrics.objects import discovery_scores, fg_ari_per_frame
from dinosavi.metrics.protocol import VOID_LABEL
from dinosavi.metrics.results import DiscoveryTable, ScoreTable
from dinosavi.models.slot_model import SlotModel
from dinosavi.viz.outputs import RunOutputs, write_sequence, write_slot_maps

__all__ = ["check_encoder_options", "evaluate_propagation", "evaluate_slots", "run_sequences"]

log = logging.getLogger(__name__)

# a sequence -> predicted ids (T, H, W) and optional slot maps (T, S, h, w)
PredictIds = Callable[[VideoSequence], tuple[Tensor, Tensor | None]]


def check_encoder_options(options: EvalOptions, has_cls: bool, encoder_name: str) -> None:
    """Check that the options that read the encoder's CLS attention get an encoder that has one.

    Raises:
        ValueError: ``background_mask=every_frame`` or lock-on ``num_extra_slots`` without a CLS token.
    """
    if has_cls:
        return
    if options.every_frame_background:
        raise ValueError(f"eval.background_mask=every_frame restricts the background slots to each frame's "
                         f"CLS-attention background; encoder `{encoder_name}` has no CLS token: use a ViT "
                         f"encoder or eval.background_mask=first_frame")
    if options.lock_on and options.num_extra_slots > 0:
        raise ValueError(
            f"eval.num_extra_slots needs the CLS-attention background of the first frame (eval.num_extra_slots="
            f"{options.num_extra_slots}); encoder `{encoder_name}` has no CLS token: use a ViT encoder or "
            f"eval.num_extra_slots=0"
        )


def evaluate_slots(
    model: SlotModel,
    source: FeatureSource,
    dataset: SequenceDataset,
    options: EvalOptions,
    out_dir: Path,
    *,
    split: str,
    name: str = "model",
    seed: int = 0,
    max_proposals: int = 20,
    propagation: PropagationParams = DINO,
) -> dict[str, float]:
    """Evaluate a slot model on an annotated split: lock-on (``options.lock_on``) or unsupervised.

    Slot initialisation draws from a generator seeded with ``seed`` per sequence, so repeated runs give
    the same masks.

    Args:
        model: the slot model, in eval mode, on the encoder's device.
        source: the features of the frames (the encoder at the eval resolution, the store when there is one).
        dataset: the annotated sequences.
        options: binding, read-out and outputs.
        out_dir: where PNGs, overlays, videos, CSVs, JSON and ``report.html`` go.
        split: the split's name (in the CSV names).
        name: what the report calls the model (its preset and step).
        seed: the seed of every sequence's slot initialisation.
        max_proposals: the most segments the unsupervised task allows (``score.max_proposals``).
        propagation: the label propagation whose soft labels ``options.fuse`` mixes in.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV; unsupervised runs add
        ``FG-ARI``, ``mBO``, ``mIoU`` and their frame-level variants).

    Raises:
        ValueError: options that need a CLS token the encoder lacks, or (unsupervised) more slots than
            ``max_proposals``.
    """
    encoder = source.encoder
    check_encoder_options(options, encoder.num_heads is not None, encoder.name)
    _check_segments(model, options, max_proposals)
    task = "semi" if options.lock_on else "unsupervised"
    log.info("evaluating %s (%s) on %s: %d sequences", name, task, split, len(dataset))
    predict_ids = _slot_ids(model, source, dataset, options, seed, propagation)
    title = f"{'Lock-on' if options.lock_on else 'Unsupervised'} evaluation of {name} on {split}"
    details = f"encoder {encoder.name}, stride {encoder.patch_size}; eval {options}"
    return run_sequences(dataset, predict_ids, out_dir, split, title, options, details, task=task,
                         max_proposals=max_proposals)


def _slot_ids(model: SlotModel, source: FeatureSource, dataset: SequenceDataset, options: EvalOptions,
              seed: int, propagation: PropagationParams) -> PredictIds:
    """A sequence -> the model's predicted ids and (``output=slot``) its slot maps, through the one time loop
    (with ``options.fuse``, fused with label propagation on the same features)."""
    def predict_ids(seq: VideoSequence) -> tuple[Tensor, Tensor | None]:
        assert seq.labels is not None
        outputs = source.frames(seq.frames, dataset.frame_paths(seq.name), seq.name)
        result = collect(segment_stream(
            model, outputs, seq.labels[0] if options.lock_on else None, options,
            size=(seq.frames.shape[-2], seq.frames.shape[-1]), patch_size=source.encoder.patch_size, seed=seed,
            propagation=propagation,
        ))
        return result.labels, result.masks if options.output == "slot" else None

    return predict_ids


def _check_segments(model: SlotModel, options: EvalOptions, max_proposals: int) -> None:
    """Without lock-on every slot is a segment; the unsupervised task allows ``max_proposals``."""
    if options.lock_on:
        return
    count = model.num_slots if options.num_slots is None else options.num_slots
    segments = count if isinstance(count, int) else sum(count)
    if segments > max_proposals:
        raise ValueError(f"lock_on=false makes every slot a segment: {segments} slots exceed the DAVIS "
                         f"unsupervised task's score.max_proposals={max_proposals}")


@dataclass
class _Scored:
    """What the loop over sequences gathered: the tables, the frames segmented and the time it took."""

    table: ScoreTable = field(default_factory=ScoreTable)
    discovery: DiscoveryTable = field(default_factory=DiscoveryTable)
    frames: int = 0
    seconds: float = 0.0


def run_sequences(
    dataset: SequenceDataset,
    predict_ids: PredictIds,
    out_dir: Path,
    split: str,
    title: str,
    options: EvalOptions,
    details: str,
    task: str = "semi",
    max_proposals: int = 20,
) -> dict[str, float]:
    """The loop shared by ``eval`` and ``propagate``: segment, score and write every sequence.

    Args:
        dataset: the annotated split.
        predict_ids: a sequence -> predicted ids ``(T, H, W)`` and optional slot maps ``(T, S, h, w)``.
        out_dir: where PNGs, overlays, videos, CSVs, JSON and ``report.html`` go.
        split: the split name used in the CSV names.
        title: the report's title.
        options: which outputs are written (``overlays``, ``videos``, ``report``).
        details: a line about the method for the report.
        task: the DAVIS task scored: ``semi`` (ids are the first frame's objects) or ``unsupervised`` (ids are
            segments, Hungarian-matched to the objects on J&F; FG-ARI, mBO and mIoU are added, see
            :class:`dinosavi.metrics.results.DiscoveryTable`).
        max_proposals: the most segments the unsupervised task allows.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV, plus the discovery
        scores with ``unsupervised``).

    Raises:
        Whatever reading or segmenting a sequence raises (a missing frame, a mask of the wrong size or
        mode, ...); the files this run wrote under ``out_dir`` are removed first, so a failed run
        leaves no partial results.
    """
    with remove_on_failure(out_dir):
        outputs = RunOutputs(out_dir, title, videos=options.videos, report=options.report)
        scored = _segment_all(dataset, predict_ids, out_dir, outputs, options.overlays, task, max_proposals)
        log.info("segmented %d frames in %.1f s (%.2f frames/s)", scored.frames, scored.seconds,
                 scored.frames / scored.seconds)
        write_score_files(scored.table, out_dir, split)
        means = scored.table.global_means()
        lines = [details, f"{scored.frames} frames in {scored.seconds:.1f} s "
                          f"({scored.frames / scored.seconds:.2f} frames/s)"]
        if task != "semi":
            write_discovery_files(scored.discovery, out_dir, split)
            found = scored.discovery.global_means()
            means |= found
            lines.append("object discovery: " + ", ".join(f"{k} {v:.3f}" for k, v in found.items()))
        report = outputs.finish(scored.table.global_means(), lines)
    print(format_table(scored.table))
    if task != "semi":
        print(lines[-1])
    if report is not None:
        print(f"report: {report}")
    return means


def _segment_all(
    dataset: SequenceDataset, predict_ids: PredictIds, out_dir: Path, outputs: RunOutputs, overlays: bool, task: str,
    max_proposals: int,
) -> _Scored:
    """Segment and score every sequence; its files are written on two threads as the next one runs."""
    scored, pending = _Scored(), list[Future[None]]()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool, Progress(transient=True) as progress:
        bar = progress.add_task("segment", total=len(dataset))
        for index in range(len(dataset)):
            seq = dataset[index]
            assert seq.labels is not None
            predicted, slot_maps = predict_ids(seq)
            labels = predicted.numpy().astype(np.uint8)
            pending += write_sequence(out_dir, seq, labels, overlays, pool)
            if task == "semi":
                scores = evaluate_semisupervised(seq.labels, predicted)
                j, f = scores.j, scores.f
            else:
                matched = match_segments(seq.labels, predicted, max_proposals=max_proposals)
                j, f = matched.j, matched.f
                truth = torch.where(seq.labels == VOID_LABEL, 0, seq.labels)
                scored.discovery.add(seq.name, discovery_scores(truth, predicted), fg_ari_per_frame(truth, predicted))
            scored.table.add(seq.name, j, f)
            pending += outputs.add(seq, labels, j, f, pool)
            if slot_maps is not None:
                pending += write_slot_maps(out_dir, seq, slot_maps, pool)
            scored.frames += len(labels)
            progress.advance(bar)
        for future in pending:
            future.result()
    scored.seconds = time.perf_counter() - t0
    return scored


def evaluate_propagation(
    source: FeatureSource,
    dataset: SequenceDataset,
    params: PropagationParams,
    options: EvalOptions,
    out_dir: Path,
    *,
    split: str,
    name: str = "dino",
) -> dict[str, float]:
    """Label propagation on a DAVIS-layout split, scored and written like ``mode=eval`` (PNGs, overlays,
    videos, CSVs, JSON, report.html; see :func:`dinosavi.evaluation.runner.run_sequences`).

    Args:
        source: the features of the frames (the encoder at propagation's resolution; the store when set).
        dataset: the annotated sequences.
        params: the propagation settings.
        options: which outputs are written (``overlays``, ``videos``, ``report``).
        out_dir: where the files go.
        split: the split's name (in the CSV names).
        name: the settings' preset name, for the report.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV).
    """
    encoder = source.encoder
    log.info("propagating (%s: %s) with %s (stride %d) on %s: %d sequences", name, params, encoder.name,
             encoder.patch_size, split, len(dataset))

    def predict_ids(seq: VideoSequence) -> tuple[Tensor, None]:
        assert seq.labels is not None
        features = source.features(seq.frames, dataset.frame_paths(seq.name), seq.name)
        return propagate_sequence(features, seq.labels[0], encoder.patch_size, params).labels, None

    title = f"Label propagation ({name}) with {encoder.name} on {split}"
    details = f"encoder {encoder.name}, stride {encoder.patch_size}; {params}"
    return run_sequences(dataset, predict_ids, out_dir, split, title, options, details)
