"""Score a DAVIS-format results folder against a DAVIS root's annotations (``mode=score``).

A results folder holds ``<seq>/<frame>.png`` palette PNGs whose pixels are object ids, for every
annotated frame of every sequence of the split (ours, or another method's). Scores go next to them,
as the official toolkit writes them: ``global_results-<split>.csv``, ``per-sequence_results-<split>.csv``
and ``metrics-<split>.json``. Unlike the toolkit, existing CSVs are never reused: every run recomputes
the scores and replaces the files atomically.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from dinosavi.data.davis import DavisDataset, read_palette_png
from dinosavi.metrics.davis import VOID_LABEL, evaluate_semisupervised
from dinosavi.metrics.matching import match_segments
from dinosavi.metrics.results import ScoreTable, format_table

__all__ = ["PROTOCOLS", "run_score", "score_folder"]

log = logging.getLogger(__name__)

PROTOCOLS = ("semi", "unsupervised")
_READ_THREADS = 4


def _read_stack(paths: list[Path], kind: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read palette PNGs into a (T, H, W) uint8 stack; every frame must have ``size`` (H, W).

    Raises:
        FileNotFoundError: a PNG is missing (names it).
        ValueError: a PNG is not a palette PNG or has the wrong size (names it).
    """
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{kind} frame missing: {path}")
    with ThreadPoolExecutor(min(_READ_THREADS, len(paths))) as pool:
        arrays = [labels for labels, _ in pool.map(read_palette_png, paths)]
    expected = size or arrays[0].shape
    for path, array in zip(paths, arrays):
        if array.shape != expected:
            raise ValueError(
                f"{kind} {path} is {array.shape[1]}x{array.shape[0]} (WxH); expected {expected[1]}x{expected[0]}"
            )
    return np.stack(arrays)


def _check_ids(pred: np.ndarray, paths: list[Path], top: int, what: str) -> None:
    """Raise naming the first file whose ids exceed ``top``."""
    per_frame = pred.reshape(len(pred), -1).max(axis=1)
    bad = np.flatnonzero(per_frame > top)
    if bad.size:
        t = int(bad[0])
        raise ValueError(f"Result {paths[t]} holds id {int(per_frame[t])}; expected ids 0..{top} ({what})")


def score_folder(
    results_dir: str | Path,
    davis_root: str | Path,
    split: str = "val",
    year: str = "2017",
    quality: str = "480p",
    protocol: str = "semi",
    max_proposals: int = 20,
) -> ScoreTable:
    """Per-object DAVIS statistics of every sequence of ``split`` in a results folder.

    ``semi``: frames 1..T-2 are scored against the objects of the first annotation. ``unsupervised``:
    the result ids are proposals (at most ``max_proposals``), matched to the annotated objects by the
    Hungarian algorithm on mean (J + F) / 2 over all frames. Nothing is written.

    Args:
        results_dir: folder of ``<seq>/<frame>.png`` palette PNGs, one per annotated frame.
        davis_root: DAVIS root with ``Annotations/<quality>`` and ``ImageSets/<year>/<split>.txt``.
        split: split file name.
        year: ``ImageSets`` sub-folder.
        quality: resolution folder.
        protocol: ``semi`` or ``unsupervised``.
        max_proposals: the largest proposal id allowed in unsupervised results.

    Returns:
        The statistics, sequences in split-file order.

    Raises:
        FileNotFoundError: the results folder, a split file, a sequence folder or a frame is missing.
        ValueError: an unknown protocol, a non-palette PNG, a frame of the wrong size, or an id that
            the first annotated frame does not hold (semi) or above ``max_proposals`` (unsupervised).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown scoring protocol `{protocol}`; expected one of {list(PROTOCOLS)}")
    results = Path(results_dir)
    if not results.is_dir():
        raise FileNotFoundError(f"Results folder not found: {results}")
    dataset = DavisDataset(davis_root, split, year=year, quality=quality, annotations="none")
    table = ScoreTable()
    for name in dataset.sequence_names:
        ann_paths = dataset.annotation_paths(name)
        gt = _read_stack(ann_paths, "Annotation")
        res_paths = [results / name / p.name for p in ann_paths]
        pred = _read_stack(res_paths, "Result", size=gt.shape[1:])
        first = gt[0]
        num_objects = int(np.where(first == VOID_LABEL, 0, first).max())
        if protocol == "semi":
            _check_ids(pred[1:-1], res_paths[1:-1], num_objects, f"the objects of {ann_paths[0]}")
            scores = evaluate_semisupervised(torch.from_numpy(gt), torch.from_numpy(pred), num_objects)
            table.add(name, scores.j, scores.f)
        else:
            _check_ids(pred, res_paths, max_proposals, f"score.max_proposals={max_proposals}")
            matched = match_segments(torch.from_numpy(gt), torch.from_numpy(pred), max_proposals=max_proposals)
            table.add(name, matched.j, matched.f)
        log.info("scored %s: %d objects, %d frames", name, num_objects, len(ann_paths))
    return table


def run_score(cfg: DictConfig) -> dict[str, float]:
    """``mode=score``: score ``results=<dir>`` against ``data.root``, write the CSVs and JSON there, print.

    Returns:
        The global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV).
    """
    if not cfg.results:
        raise ValueError("mode=score needs results=<folder of <seq>/<frame>.png palette PNGs>")
    split = cfg.data.split or "val"
    results = Path(cfg.results)
    table = score_folder(
        results,
        cfg.data.root,
        split,
        year=cfg.data.year,
        quality=cfg.data.quality,
        protocol=cfg.score.protocol,
        max_proposals=cfg.score.max_proposals,
    )
    for old in (results / f"global_results-{split}.csv", results / f"per-sequence_results-{split}.csv"):
        if old.exists():
            log.info("recomputed the scores; replacing the existing %s (CSVs are never reused)", old)
    paths = table.write(results, split)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    print(format_table(table))
    return table.global_means()
