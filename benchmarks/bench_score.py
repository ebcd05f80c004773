"""Whole-process benchmark of ``mode=score`` and of the CLI's start-up, against baselines on the same folders.

Times ``python -m dinosavi mode=score results=<dir> data.root=<root>`` against

* the project's per-frame NumPy/OpenCV path as a process of its own (``benchmarks/baselines/score_numpy.py``),
  always;
* the official toolkit's ``evaluation_method.py`` when ``--official <dir>`` names a local clone of
  davisvideochallenge/davis2017-evaluation (not vendored, not a dependency; it runs under
  ``--official-python``, which needs the toolkit's requirements: numpy, pillow, opencv, pandas,
  scikit-image, tqdm).

Each set: one warm-up run of every command (it also gives the values to check), then ``--pairs`` rounds
of ours, NumPy, official, in that order; medians are reported. Values are checked: the NumPy baseline's
per-object statistics against ours at full precision, the toolkit's two CSVs against ours byte for byte.

Sets:

* ``sample``: the DAVIS sample (4 sequences, 192 frames, 1 object each), predictions varied from the
  annotations (eroded, dilated, shifted, partly or wholly emptied);
* ``osvos`` (with ``--official``): the sample scored on the toolkit's own OSVOS results, when it ships them;
* ``30seq``: 30 sequences of 60-74 frames, two sample sequences fused into each (2 objects), played back
  and forth, one of them flipped, with varied predictions: 2,010 frames and 60 objects, close to
  DAVIS-2017 val (1,999 frames, 61 objects).

Also times ``mode=help`` and a configuration error, and lists ``mode=score``'s import time by package.

Run from the repository root::

    python benchmarks/bench_score.py [--official DIR --official-python PY] [--pairs 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dinosavi.data.png import INFLATE, read_palette_png, write_palette_png  # noqa: E402
from dinosavi.metrics import compiled  # noqa: E402

SAMPLE = Path(os.environ.get("DINOSAVI_DAVIS_SAMPLE", ROOT.parent / "shared" / "data" / "davis-sample"))
DATA_VERSION = "1"  # bump when the generated sets change


def perturb(labels: np.ndarray, seed: int) -> np.ndarray:
    """A varied prediction of (H, W) ids: each object eroded, dilated, shifted, cut in half or dropped."""
    out = np.zeros_like(labels)
    kernel = np.ones((3, 3), np.uint8)
    for k in range(1, int(labels.max()) + 1):
        mask = (labels == k).astype(np.uint8)
        op = (seed + 3 * k) % 7
        if op in (0, 1):
            mask = cv2.erode(mask, kernel, iterations=2 + op)
        elif op == 2:
            mask = cv2.dilate(mask, kernel, iterations=2)
        elif op in (3, 4):
            mask = np.roll(mask, (2 * op - 4, 9 - 2 * op), axis=(0, 1))
        elif op == 5:
            mask[:, : mask.shape[1] // 2] = 0
        elif seed % 5 == 0:
            mask[:] = 0
        out[mask > 0] = k
    return out


def _split(root: Path) -> list[str]:
    return [n.strip() for n in (root / "ImageSets" / "2017" / "val.txt").read_text().splitlines() if n.strip()]


def _masks(root: Path, name: str) -> list[np.ndarray]:
    return [read_palette_png(p)[0] for p in sorted((root / "Annotations" / "480p" / name).glob("*.png"))]


def make_sample_results(out: Path) -> None:
    """Varied predictions for every annotated frame of the sample."""
    for i, name in enumerate(_split(SAMPLE)):
        (out / name).mkdir(parents=True, exist_ok=True)
        paths = sorted((SAMPLE / "Annotations" / "480p" / name).glob("*.png"))
        for t, path in enumerate(paths):
            write_palette_png(out / name / path.name, perturb(read_palette_png(path)[0], 11 * i + t))


def _back_and_forth(t: int, n: int) -> int:
    period = max(2 * n - 2, 1)
    m = t % period
    return m if m < n else period - m


def make_30seq(root: Path, results: Path) -> int:
    """The 30-sequence DAVIS root and its varied results; returns the number of frames."""
    sources = [[m > 0 for m in _masks(SAMPLE, name)] for name in _split(SAMPLE)]
    names, frames = [], 0
    for i in range(30):
        name = f"seq{i:02d}"
        names.append(name)
        a, b = sources[i % len(sources)], sources[(i + 1 + i // len(sources)) % len(sources)]
        length = 60 + (7 * i) % 15
        for sub in (root / "Annotations" / "480p" / name, root / "JPEGImages" / "480p" / name, results / name):
            sub.mkdir(parents=True, exist_ok=True)
        for t in range(length):
            first = np.roll(a[_back_and_forth(t, len(a))], 40 * (i % 5) - 80, axis=1)
            second = b[_back_and_forth(t + 5 * i, len(b))]
            if i % 2:
                second = second[:, ::-1]
            gt = np.zeros(first.shape, np.uint8)
            gt[second] = 2
            gt[first] = 1
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", gt)
            write_palette_png(results / name / f"{t:05d}.png", perturb(gt, 13 * i + t))
            (root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg").touch()  # the toolkit counts frames by JPEG
        frames += length
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return frames


def prepare(work: Path, official: Path | None) -> dict[str, tuple[Path, Path]]:
    """The sets: name -> (DAVIS root, results folder); generated once into ``work``."""
    stamp = work / f".complete-{DATA_VERSION}"
    if not stamp.exists():
        if work.exists():
            shutil.rmtree(work)
        t0 = time.perf_counter()
        make_sample_results(work / "sample-results")
        frames = make_30seq(work / "30seq", work / "30seq-results")
        print(f"generated the sets in {work} ({frames} frames in 30seq) in {time.perf_counter() - t0:.0f} s")
        stamp.touch()
    sets = {"sample": (SAMPLE, work / "sample-results")}
    osvos = None if official is None else official / "results" / "semi-supervised" / "osvos"
    if osvos is not None and all((osvos / name).is_dir() for name in _split(SAMPLE)):
        local = work / "osvos-results"
        if not local.exists():
            for name in _split(SAMPLE):
                shutil.copytree(osvos / name, local / name)
        sets["osvos"] = (SAMPLE, local)
    sets["30seq"] = (work / "30seq", work / "30seq-results")
    return sets


def timed(cmd: list[str], cwd: Path, before: list[Path] = ()) -> tuple[float, str]:
    """Wall seconds of one process (after deleting ``before``) and its stdout; raises on failure."""
    for path in before:
        path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return seconds, done.stdout


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_values(results: Path, numpy_json: Path, official_results: Path | None) -> str:
    """Compare our JSON with the NumPy baseline's and our CSVs with the toolkit's; raise on a difference."""
    ours = json.loads((results / "metrics-val.json").read_text())["per_object"]
    base = json.loads(numpy_json.read_text())["per_object"]
    if sorted(ours) != sorted(base):
        raise SystemExit(f"objects differ: ours {sorted(ours)[:5]}..., NumPy baseline {sorted(base)[:5]}...")
    diff = max(abs(ours[o][s] - base[o][s]) if not _same(ours[o][s], base[o][s]) else 0.0
               for o in ours for s in base[o])
    if diff != 0:
        raise SystemExit(f"per-object statistics differ from the NumPy baseline by up to {diff}")
    note = f"{len(ours)} objects, every statistic equal to the NumPy baseline's"
    if official_results is not None:
        for csv in ("global_results-val.csv", "per-sequence_results-val.csv"):
            if (results / csv).read_text() != (official_results / csv).read_text():
                raise SystemExit(f"{csv} differs from the toolkit's: {results / csv} vs {official_results / csv}")
        note += ", both CSVs byte-identical to the toolkit's"
    return note


def bench_set(name: str, root: Path, results: Path, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Median wall seconds of every command on one set; checks the values."""
    frames = sum(len(list((root / "Annotations" / "480p" / n).glob("*.png"))) for n in _split(root))
    numpy_json = work / f"{name}-numpy.json"
    commands: dict[str, tuple[list[str], Path, list[Path]]] = {
        "ours": ([sys.executable, "-m", "dinosavi", "mode=score", f"results={results}", f"data.root={root}",
                  "data.split=val", f"hydra.run.dir={work / 'runs' / name}"], ROOT, []),
        "numpy": ([sys.executable, str(ROOT / "benchmarks" / "baselines" / "score_numpy.py"), "--results",
                   str(results), "--davis", str(root), "--out", str(numpy_json)], ROOT, []),
    }
    official_results = None
    if args.official is not None:
        official_results = work / f"{name}-official-results"  # its own copy: the toolkit reuses CSVs it finds
        if not official_results.exists():
            shutil.copytree(results, official_results, ignore=shutil.ignore_patterns("*.csv", "*.json"))
        stale = [official_results / "global_results-val.csv", official_results / "per-sequence_results-val.csv"]
        commands["official"] = ([args.official_python, "evaluation_method.py", "--task", "semi-supervised",
                                 "--results_path", str(official_results), "--davis_path", str(root), "--set", "val"],
                                args.official, stale)
    times: dict[str, list[float]] = {tool: [] for tool in commands}
    for cmd, cwd, before in commands.values():  # warm-up (file cache, bytecode); gives the values
        timed(cmd, cwd, before)
    note = check_values(results, numpy_json, official_results)
    for _ in range(args.pairs):
        for tool, (cmd, cwd, before) in commands.items():
            times[tool].append(timed(cmd, cwd, before)[0])
    med = {tool: statistics.median(ts) for tool, ts in times.items()}
    print(f"\n[{name}] {len(_split(root))} sequences, {frames} frames; {note}")
    for tool, ts in times.items():
        ratio = "" if tool == "ours" else f"   ours is {med[tool] / med['ours']:.1f}x faster"
        print(f"  {tool:<9} median {med[tool]:7.2f} s   runs {' '.join(f'{t:.2f}' for t in ts)}{ratio}")
    return med


def import_breakdown(cmd: list[str], top: int = 8) -> str:
    """``python -X importtime``: self time summed by top-level package, largest first."""
    done = subprocess.run([sys.executable, "-X", "importtime", *cmd], cwd=ROOT, capture_output=True, text=True)
    by_root: dict[str, int] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if m:
            root = m[2].split(".")[0]
            by_root[root] = by_root.get(root, 0) + int(m[1])
    total = sum(by_root.values())
    parts = sorted(by_root.items(), key=lambda kv: -kv[1])[:top]
    return f"{total / 1e3:.0f} ms: " + ", ".join(f"{k} {v / 1e3:.0f}" for k, v in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, default=None, help="clone of davisvideochallenge/davis2017-evaluation")
    parser.add_argument("--official-python", default=sys.executable, help="python with the toolkit's requirements")
    parser.add_argument("--pairs", type=int, default=3, help="timed rounds per set (after one warm-up)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dinosavi-bench-score"), help="generated sets")
    parser.add_argument("--sets", nargs="*", default=None, help="only these sets (sample, osvos, 30seq)")
    args = parser.parse_args()
    if args.official is not None and not (args.official / "evaluation_method.py").is_file():
        raise SystemExit(f"--official {args.official}: no evaluation_method.py there")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"compiled kernel: {'yes' if compiled.available() else 'no (torch path)'}; PNG inflater: {INFLATE}; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")

    work = args.work
    sets = prepare(work, args.official)
    medians = {}
    for name, (root, results) in sets.items():
        if args.sets is None or name in args.sets:
            medians[name] = bench_set(name, root, results, args, work)

    help_cmd = [sys.executable, "-m", "dinosavi", "mode=help"]
    error_cmd = [sys.executable, "-m", "dinosavi", "mode=score", "model.bogus=1",
                 f"hydra.run.dir={work / 'runs' / 'error'}"]
    timed(help_cmd, ROOT)
    help_s = statistics.median(timed(help_cmd, ROOT)[0] for _ in range(5))
    error_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(error_cmd, cwd=ROOT, capture_output=True)
        error_times.append(time.perf_counter() - t0)
    print(f"\nmode=help: median {help_s:.2f} s (target < 1.0); config error (model.bogus=1): "
          f"median {statistics.median(error_times):.2f} s")
    print("import time, mode=help:  " + import_breakdown(["-m", "dinosavi", "mode=help"]))
    root, results = sets["sample"]
    score_cmd = ["-m", "dinosavi", "mode=score", f"results={results}", f"data.root={root}",
                 f"hydra.run.dir={work / 'runs' / 'importtime'}"]
    print("import time, mode=score: " + import_breakdown(score_cmd))
    print("import time, torch alone (what mode=score no longer pays): " + import_breakdown(["-c", "import torch"], 3))

    print("\nratios (baseline median / ours median), whole process; the target applies to the toolkit when it")
    print("is given, else to the NumPy path:")
    for name, med in medians.items():
        target = 8 if name == "30seq" else 3
        primary = "official" if "official" in med else "numpy"
        for tool in ("official", "numpy"):
            if tool in med:
                r = med[tool] / med["ours"]
                verdict = f"   (target >= {target}x: {'met' if r >= target else 'NOT met'})" if tool == primary else ""
                print(f"  {name:<7} vs {tool:<9} {r:6.1f}x{verdict}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
