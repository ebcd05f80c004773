"""The files of a scored evaluation: the official DAVIS CSVs, a full-precision JSON, and the object-discovery
CSV and JSON of unsupervised runs; and the text table printed at the end. NumPy only (``mode=score``
imports no torch). Each file is written atomically.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dinosavi.atomic import write_atomic
from dinosavi.metrics.protocol import DISCOVERY_METRICS
from dinosavi.metrics.results import GLOBAL_COLUMNS, DiscoveryTable, ScoreTable

__all__ = ["format_table", "write_discovery_files", "write_score_files"]


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def write_score_files(table: ScoreTable, out_dir: str | Path, split: str) -> list[Path]:
    """Write ``global_results-<split>.csv``, ``per-sequence_results-<split>.csv``, ``metrics-<split>.json``.

    CSVs follow the official ``evaluation_method.py`` (no index column, ``%.3f``); the JSON holds
    every value at full precision. Each file is written atomically.

    Returns:
        The written paths.
    """
    out = Path(out_dir)
    g = table.global_means()
    global_csv = ",".join(GLOBAL_COLUMNS) + "\n" + ",".join(_fmt(g[c]) for c in GLOBAL_COLUMNS) + "\n"
    rows = [f"{o.name},{_fmt(o.j_mean)},{_fmt(o.f_mean)}" for o in table.objects]
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
            for o in table.objects
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


def write_discovery_files(table: DiscoveryTable, out_dir: str | Path, split: str) -> list[Path]:
    """Write ``discovery-<split>.csv`` (a ``mean`` row, then one row per sequence, ``%.3f``) and
    ``discovery-<split>.json`` (full precision, with the per-frame curves), atomically."""
    out = Path(out_dir)
    g = table.global_means()
    lines = ["Sequence," + ",".join(DISCOVERY_METRICS), "mean," + ",".join(_fmt(g[m]) for m in DISCOVERY_METRICS)]
    lines += [f"{name}," + ",".join(_fmt(r[m]) for m in DISCOVERY_METRICS) for name, r in table.rows.items()]
    payload = {"split": split, "global": g, "per_sequence": table.rows,
               "FG-ARI per frame index": table.frame_curve(), "per_sequence_per_frame_fg_ari": table.curves}
    paths = [out / f"discovery-{split}.csv", out / f"discovery-{split}.json"]
    for path, text in zip(paths, ["\n".join(lines) + "\n", json.dumps(payload, indent=2, allow_nan=True) + "\n"]):
        write_atomic(path, text)
    return paths


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
