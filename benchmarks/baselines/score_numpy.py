"""Whole-process baseline of ``benchmarks/bench_score.py``: score a DAVIS results folder as the official
toolkit computes, one sequence after another, masks read with PIL, J and F one frame and one object
at a time with NumPy/OpenCV (:mod:`benchmarks.baselines.davis_numpy`), semi-supervised task.

Run from the repository root::

    python benchmarks/baselines/score_numpy.py --results DIR --davis ROOT [--split val] [--out scores.json]

Prints the global J&F; ``--out`` writes every per-object statistic at full precision (the layout of
the ``per_object`` part of ``mode=score``'s ``metrics-<split>.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.baselines import davis_numpy

STATS = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def score(results: Path, davis: Path, split: str) -> dict[str, dict[str, float]]:
    """Per-object statistics of every sequence of the split, keyed ``<sequence>_<object id>``."""
    names = [n.strip() for n in (davis / "ImageSets" / "2017" / f"{split}.txt").read_text().splitlines() if n.strip()]
    out = {}
    for name in names:
        paths = sorted((davis / "Annotations" / "480p" / name).glob("*.png"))
        gt = np.stack([np.array(Image.open(p)) for p in paths])
        pred = np.stack([np.array(Image.open(results / name / p.name)) for p in paths])
        j, f = davis_numpy.evaluate_semisupervised(gt, pred)
        for k in range(len(j)):
            values = davis_numpy.db_statistics(j[k]) + davis_numpy.db_statistics(f[k])
            out[f"{name}_{k + 1}"] = dict(zip(STATS, values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--davis", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    per_object = score(args.results, args.davis, args.split)
    j_mean = float(np.mean([o["J-Mean"] for o in per_object.values()]))
    f_mean = float(np.mean([o["F-Mean"] for o in per_object.values()]))
    print(f"J&F-Mean {(j_mean + f_mean) / 2:.6f}  J-Mean {j_mean:.6f}  F-Mean {f_mean:.6f}  "
          f"({len(per_object)} objects)")
    if args.out is not None:
        args.out.write_text(json.dumps({"per_object": per_object}, indent=1) + "\n")


if __name__ == "__main__":
    main()
