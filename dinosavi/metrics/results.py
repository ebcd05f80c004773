"""Accumulate per-object DAVIS statistics and the per-sequence object-discovery scores (FG-ARI, mBO,
mIoU) of unsupervised evaluation, and reduce them to the global numbers.

Kept apart from the metric functions: these only collect numbers (NumPy only: no torch, no files; the
official CSVs and JSON are written by :mod:`dinosavi.evaluation.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dinosavi.metrics.protocol import DISCOVERY_METRICS, db_statistics

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["GLOBAL_COLUMNS", "DiscoveryTable", "ObjectStats", "ScoreTable"]

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


@dataclass(frozen=True)
class ObjectStats:
    """DAVIS statistics of one object of one sequence (``name`` is ``<sequence>_<object id>``)."""

    name: str
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float


@dataclass
class ScoreTable:
    """Per-object statistics of every scored sequence, in insertion order."""

    objects: list[ObjectStats] = field(default_factory=list)

    def add(self, sequence: str, j: Tensor | np.ndarray, f: Tensor | np.ndarray) -> None:
        """Add one sequence from per-object, per-frame scores.

        Args:
            sequence: sequence name.
            j: (K, T') J of objects 1..K.
            f: (K, T') F of objects 1..K.
        """
        if len(j) != len(f):
            raise ValueError(f"sequence `{sequence}`: J has {len(j)} objects but F has {len(f)}")
        if any(o.name.rsplit("_", 1)[0] == sequence for o in self.objects):
            raise ValueError(f"sequence `{sequence}` was already added")
        for k in range(len(j)):
            jm, jr, jd = db_statistics(j[k])
            fm, fr, fd = db_statistics(f[k])
            self.objects.append(ObjectStats(f"{sequence}_{k + 1}", jm, jr, jd, fm, fr, fd))

    def global_means(self) -> dict[str, float]:
        """Means over all objects of each statistic; ``J&F-Mean = (J-Mean + F-Mean) / 2``."""
        if not self.objects:
            raise ValueError("no sequence was added to the ScoreTable")
        cols = np.array([[o.j_mean, o.j_recall, o.j_decay, o.f_mean, o.f_recall, o.f_decay] for o in self.objects])
        m = cols.mean(axis=0)
        values = [(m[0] + m[3]) / 2.0, *m.tolist()]
        return dict(zip(GLOBAL_COLUMNS, (float(v) for v in values)))


@dataclass
class DiscoveryTable:
    """Object-discovery scores per sequence (:func:`dinosavi.metrics.objects.discovery_scores`), and
    optionally each sequence's per-frame FG-ARI (the drift curve)."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)

    def add(self, sequence: str, scores: dict[str, float], per_frame: Tensor | None = None) -> None:
        """Add one sequence's scores (one value per name in ``DISCOVERY_METRICS``) and its ``(T,)``
        per-frame FG-ARI."""
        if sequence in self.rows:
            raise ValueError(f"sequence `{sequence}` was already added")
        missing = [m for m in DISCOVERY_METRICS if m not in scores]
        if missing:
            raise ValueError(f"sequence `{sequence}`: scores lack {missing}")
        self.rows[sequence] = {m: float(scores[m]) for m in DISCOVERY_METRICS}
        if per_frame is not None:
            self.curves[sequence] = [float(v) for v in per_frame]

    def global_means(self) -> dict[str, float]:
        """Mean over sequences of each score, NaNs (sequences without objects) skipped."""
        if not self.rows:
            raise ValueError("no sequence was added to the DiscoveryTable")
        cols = np.array([[r[m] for m in DISCOVERY_METRICS] for r in self.rows.values()])
        return dict(zip(DISCOVERY_METRICS, (_nanmean(c) for c in cols.T)))

    def frame_curve(self) -> list[float]:
        """FG-ARI per frame index, the mean over the sequences that have that frame (NaNs skipped)."""
        length = max((len(c) for c in self.curves.values()), default=0)
        padded = np.full((len(self.curves), length), np.nan)
        for i, curve in enumerate(self.curves.values()):
            padded[i, : len(curve)] = curve
        return [_nanmean(col) for col in padded.T]


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")
