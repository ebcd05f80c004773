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

__all__ = ["ANCHOR_METRICS", "GLOBAL_COLUMNS", "AnchorTable", "DiscoveryTable", "ObjectStats", "ScoreTable"]

ANCHOR_METRICS = ("FG-ARI", "mBO", "FG-ARI-frame", "mBO-frame")
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


@dataclass
class AnchorTable:
    """The samples of the VideoSAUR / SlotContrast protocol (:mod:`dinosavi.metrics.videosaur`), per video.

    Reduced as their torchmetrics do: ``FG-ARI`` and ``mBO`` are means over every sample (a clip, or a whole
    video) of every video, samples without instances skipped; ``FG-ARI-frame`` and ``mBO-frame`` are means over
    every frame of every sample, frames without instances skipped (so long videos weigh more).
    """

    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    frames: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, video: str, fg_ari: float, mbo: float, frame_fg_ari: list[float], frame_mbo: list[float]) -> None:
        """Add one sample of ``video``: its video scores and its frames' scores (NaN: no instance)."""
        if len(frame_fg_ari) != len(frame_mbo):
            raise ValueError(f"video `{video}`: {len(frame_fg_ari)} frame FG-ARIs but {len(frame_mbo)} frame mBOs")
        self.samples.setdefault(video, []).append((float(fg_ari), float(mbo)))
        self.frames.setdefault(video, []).extend(zip(map(float, frame_fg_ari), map(float, frame_mbo)))

    def video_means(self, video: str) -> dict[str, float]:
        """The four scores over the samples of one video (NaN where it has none with instances)."""
        samples = np.array(self.samples.get(video, []), dtype=float).reshape(-1, 2)
        frames = np.array(self.frames.get(video, []), dtype=float).reshape(-1, 2)
        values = [_nanmean(samples[:, 0]), _nanmean(samples[:, 1]), _nanmean(frames[:, 0]), _nanmean(frames[:, 1])]
        return dict(zip(ANCHOR_METRICS, values))

    def global_means(self) -> dict[str, float]:
        """The four scores over every sample (and frame) of every video."""
        if not self.samples:
            raise ValueError("no sample was added to the AnchorTable")
        samples = np.array([s for v in self.samples.values() for s in v], dtype=float).reshape(-1, 2)
        frames = np.array([f for v in self.frames.values() for f in v], dtype=float).reshape(-1, 2)
        values = [_nanmean(samples[:, 0]), _nanmean(samples[:, 1]), _nanmean(frames[:, 0]), _nanmean(frames[:, 1])]
        return dict(zip(ANCHOR_METRICS, values))

    def counts(self) -> dict[str, int]:
        """Videos, samples and frames added, and the samples and frames that had instances (those scored)."""
        samples = [s for v in self.samples.values() for s in v]
        frames = [f for v in self.frames.values() for f in v]
        return {"videos": len(self.samples), "samples": len(samples), "frames": len(frames),
                "scored_samples": sum(not np.isnan(s[1]) for s in samples),
                "scored_frames": sum(not np.isnan(f[1]) for f in frames)}


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")
