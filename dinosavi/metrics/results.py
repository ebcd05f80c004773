"""Accumulate per-object DAVIS statistics and write the official CSV files and a full JSON; likewise
the per-sequence object-discovery scores (FG-ARI, mBO, mIoU) of unsupervised evaluation.

Kept apart from the metric functions: these only collect numbers and format them (NumPy only: no torch).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dinosavi.atomic import write_atomic
from dinosavi.metrics.protocol import DISCOVERY_METRICS, db_statistics

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["GLOBAL_COLUMNS", "DiscoveryTable", "ObjectStats", "ScoreTable", "format_table"]

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


def _fmt(x: float) -> str:
    return f"{x:.3f}"


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

    def write(self, out_dir: str | Path, split: str) -> list[Path]:
        """Write ``global_results-<split>.csv``, ``per-sequence_results-<split>.csv``, ``metrics-<split>.json``.

        CSVs follow the official ``evaluation_method.py`` (no index column, ``%.3f``); the JSON holds
        every value at full precision. Each file is written atomically.

        Returns:
            The written paths.
        """
        out = Path(out_dir)
        g = self.global_means()
        global_csv = ",".join(GLOBAL_COLUMNS) + "\n" + ",".join(_fmt(g[c]) for c in GLOBAL_COLUMNS) + "\n"
        rows = [f"{o.name},{_fmt(o.j_mean)},{_fmt(o.f_mean)}" for o in self.objects]
        seq_csv = "Sequence,J-Mean,F-Mean\n" + "".join(r + "\n" for r in rows)
        payload = {
            "split": split,
            "global": g,
            "per_object": {
                o.name: {
                    "J-Mean": o.j_mean,
                    "J-Recall": o.j_recall,
                    "J-Decay": o.j_decay,
                    "F-Mean": o.f_mean,
                    "F-Recall": o.f_recall,
                    "F-Decay": o.f_decay,
                }
                for o in self.objects
            },
        }
        paths = [
            out / f"global_results-{split}.csv",
            out / f"per-sequence_results-{split}.csv",
            out / f"metrics-{split}.json",
        ]
        texts = [global_csv, seq_csv, json.dumps(payload, indent=2, allow_nan=True) + "\n"]
        for path, text in zip(paths, texts):
            write_atomic(path, text)
        return paths


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

    def write(self, out_dir: str | Path, split: str) -> list[Path]:
        """Write ``discovery-<split>.csv`` (a ``mean`` row, then one row per sequence, ``%.3f``) and
        ``discovery-<split>.json`` (full precision, with the per-frame curves), atomically."""
        out = Path(out_dir)
        g = self.global_means()
        lines = ["Sequence," + ",".join(DISCOVERY_METRICS), "mean," + ",".join(_fmt(g[m]) for m in DISCOVERY_METRICS)]
        lines += [f"{name}," + ",".join(_fmt(r[m]) for m in DISCOVERY_METRICS) for name, r in self.rows.items()]
        payload = {"split": split, "global": g, "per_sequence": self.rows,
                   "FG-ARI per frame index": self.frame_curve(), "per_sequence_per_frame_fg_ari": self.curves}
        paths = [out / f"discovery-{split}.csv", out / f"discovery-{split}.json"]
        for path, text in zip(paths, ["\n".join(lines) + "\n", json.dumps(payload, indent=2, allow_nan=True) + "\n"]):
            write_atomic(path, text)
        return paths


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def format_table(table: ScoreTable) -> str:
    """Readable text table: the global row, then one row per object."""
    g = table.global_means()
    head = " | ".join(f"{c:>9}" for c in GLOBAL_COLUMNS)
    lines = ["Global results", head, " | ".join(f"{g[c]:>9.3f}" for c in GLOBAL_COLUMNS), ""]
    width = max([len("Sequence"), *(len(o.name) for o in table.objects)])
    lines.append(f"{'Sequence':<{width}} | {'J-Mean':>7} | {'F-Mean':>7}")
    for o in table.objects:
        jm = "nan" if math.isnan(o.j_mean) else f"{o.j_mean:.3f}"
        fm = "nan" if math.isnan(o.f_mean) else f"{o.f_mean:.3f}"
        lines.append(f"{o.name:<{width}} | {jm:>7} | {fm:>7}")
    return "\n".join(lines)
