"""Score a DAVIS-format results folder against a DAVIS root's annotations (``mode=score``).

A results folder holds ``<seq>/<frame>.png`` palette PNGs whose pixels are object ids, for every
annotated frame of every sequence of the split (ours, or another method's): the ``results/`` folder of
``mode=eval``, ``propagate`` and ``segment`` alike. ``mode=score`` writes the scores into its own run
directory, as the official toolkit writes them: ``global_results-<split>.csv``,
``per-sequence_results-<split>.csv`` and ``metrics-<split>.json``; the results folder is only read. Unlike
the toolkit, existing CSVs are never reused: every run recomputes the scores.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from dinosavi.data.davis import DavisDataset
from dinosavi.data.png import read_palette_png
from dinosavi.data.subset import check_range, frame_range, select_names
from dinosavi.evaluation.options import ScoreOptions
from dinosavi.metrics import compiled
from dinosavi.metrics.protocol import VOID_LABEL
from dinosavi.metrics.results import ScoreTable

__all__ = ["default_workers", "score_folder"]

log = logging.getLogger(__name__)


_In = TypeVar("_In")
_Out = TypeVar("_Out")


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_stack(paths: list[Path], kind: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read palette PNGs into a (T, H, W) uint8 stack; every frame must have ``size`` (H, W).

    Raises:
        FileNotFoundError: a PNG is missing (names it).
        ValueError: a PNG is not a palette PNG or has the wrong size (names it).
    """
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{kind} frame missing: {path}")
    arrays = [read_palette_png(path)[0] for path in paths]
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


def _kernel_scores(
    gt: np.ndarray, pred: np.ndarray, num_objects: int, task: str, max_proposals: int
) -> tuple[np.ndarray, np.ndarray]:
    """(K, T') J and F of one sequence: the compiled kernel, or the torch path when it is not built."""
    if compiled.available():
        if task == "semi":
            return compiled.semisupervised(gt, pred, num_objects)
        j, f, _ = compiled.unsupervised(gt, pred, num_objects)
        return j, f
    import torch  # the fallback only: the compiled path never imports torch

    from dinosavi.metrics.davis import evaluate_semisupervised
    from dinosavi.metrics.matching import match_segments

    g, p = torch.from_numpy(gt), torch.from_numpy(pred)
    if task == "semi":
        scores = evaluate_semisupervised(g, p, num_objects)
        return scores.j.numpy(), scores.f.numpy()
    matched = match_segments(g, p, max_proposals=max_proposals, num_objects=num_objects)
    return matched.j.numpy(), matched.f.numpy()


def _score_sequence(
    ann_paths: list[Path], res_paths: list[Path], task: str, max_proposals: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Read one sequence's annotations and results, check the ids, score them: ``(K, j, f)``."""
    gt = _read_stack(ann_paths, "Annotation")
    pred = _read_stack(res_paths, "Result", size=gt.shape[1:])
    first = gt[0]
    num_objects = int(np.where(first == VOID_LABEL, 0, first).max())
    if task == "semi":
        _check_ids(pred[1:-1], res_paths[1:-1], num_objects, f"the objects of {ann_paths[0]}")
    else:
        _check_ids(pred, res_paths, max_proposals, f"score.max_proposals={max_proposals}")
    j, f = _kernel_scores(gt, pred, num_objects, task, max_proposals)
    return num_objects, j, f


def _ordered_map(fn: Callable[[_In], _Out], items: Iterable[_In], workers: int) -> Iterator[_Out]:
    """``map(fn, items)`` in ``workers`` threads, in order, with at most ``workers + 1`` items in flight
    (so at most that many sequences' masks in memory). An error cancels the items not yet started."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers)
    pending: deque[Future[_Out]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def score_folder(
    results_dir: str | Path,
    davis_root: str | Path,
    split: str = "val",
    year: str = "2017",
    quality: str = "480p",
    options: ScoreOptions | None = None,
    sequences: list[str] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> ScoreTable:
    """Per-object DAVIS statistics of every sequence of ``split`` in a results folder.

    ``semi``: frames 1..T-2 are scored against the objects of the first annotation. ``unsupervised``:
    the result ids are proposals (at most ``max_proposals``), matched to the annotated objects by the
    Hungarian algorithm on mean (J + F) / 2 over all frames. Nothing is written.

    Sequences are read and scored in ``workers`` threads (the PNG inflater and the compiled kernel
    release the interpreter lock), at most ``workers + 1`` at a time, and added in split-file order.
    With the compiled kernel (:mod:`dinosavi.metrics.compiled`) nothing here imports torch.

    Args:
        results_dir: folder of ``<seq>/<frame>.png`` palette PNGs, one per annotated frame.
        davis_root: DAVIS root with ``Annotations/<quality>`` and ``ImageSets/<year>/<split>.txt``.
        split: split file name.
        year: ``ImageSets`` sub-folder.
        quality: resolution folder.
        options: the DAVIS task (``score.task``: ``semi`` or ``unsupervised``), the largest proposal id
            allowed in unsupervised results, and the threads (0: one per core this process may use);
            ``ScoreOptions()`` when None.
        sequences: the sequences scored (``data.sequences``; every one of the split when None).
        start: the first frame scored as the first frame (``data.start``): its annotation gives the objects.
        stop: the end of the frame range (``data.stop``, exclusive; None: to the end).

    Returns:
        The statistics, sequences in split-file order.

    Raises:
        FileNotFoundError: the results folder, a split file, a sequence folder or a frame is missing.
        ValueError: an unknown task, a non-palette PNG, a frame of the wrong size, or an id that
            the first annotated frame does not hold (semi) or above ``max_proposals`` (unsupervised);
            of several, the one of the first such sequence in the split file.
    """
    options = options or ScoreOptions()
    task, max_proposals = options.task, options.max_proposals
    results = Path(results_dir)
    if not results.is_dir():
        raise FileNotFoundError(f"Results folder not found: {results}")
    dataset = DavisDataset(davis_root, split, year=year, quality=quality, annotations="none")
    names = select_names(dataset.sequence_names, sequences, f"split {split} of {dataset.root}")
    check_range(start, stop)

    def score(name: str) -> tuple[int, np.ndarray, np.ndarray]:
        ann_paths = dataset.annotation_paths(name)
        if start or stop is not None:
            frames = dataset.frame_paths(name)
            kept = {p.stem for p in frames[frame_range(len(frames), start, stop, name)]}
            ann_paths = [p for p in ann_paths if p.stem in kept]
        return _score_sequence(ann_paths, [results / name / p.name for p in ann_paths], task, max_proposals)

    table = ScoreTable()
    for name, (num_objects, j, f) in zip(names, _ordered_map(score, names, options.workers or default_workers())):
        table.add(name, j, f)
        log.info("scored %s: %d objects, %d frames", name, num_objects, j.shape[1] + (2 if task == "semi" else 0))
    return table
