"""Benchmark evaluation at 480p on CPU: label propagation (chunked vs. the dense DINO-style baseline) and lock-on.

Frames of one DAVIS sequence are encoded once with EfficientNet-Lite0 (480 short side, long side a
multiple of 64); then each method runs in its own subprocess, so each peak RSS is its own:

- ``chunked``: :func:`dinosavi.evaluation.propagate.propagate_sequence` (the DINO preset);
- ``dense``: :mod:`benchmarks.baselines.propagate_dense`, the full ``(C, N, N)`` affinity per frame;
- ``lockon``: :func:`dinosavi.evaluation.vos.segment_sequence` with an (untrained) DINOSAUR model, frames
  encoded in the worker at 480p, as ``mode=eval eval.short_side=480`` does;
- ``tracked``: the same with ``track_mode=overlap`` (the cost of slot tracking);
- ``unsupervised``: ``lock_on=False``, every slot a segment (``mode=eval eval.lock_on=false``).

Prints frames/s, peak RSS, the chunked/dense ratios, and checks that both propagations give the same labels
(at most 1e-4 of the pixels may differ: the two matmul orders round differently, which can flip near ties).
Run from the repository root: ``python benchmarks/bench_eval.py [--frames 10] [--stride 8]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dinosavi.cli.build import build_encoder
from dinosavi.cli.config import EncoderConfig
from dinosavi.data.davis import DavisDataset
from dinosavi.encoders.base import ResizeRule
from dinosavi.models.factory import build_model
from dinosavi.models.options import ModelConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis-sample"


def _rss_mb() -> float:
    """Current resident set size in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``; ``ru_maxrss`` keeps the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    seq = DavisDataset(args.data, "val").load(args.sequence)
    assert seq.labels is not None
    return seq.frames[: args.frames], seq.labels[: args.frames]


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints a JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.run in ("lockon", "tracked", "unsupervised"):
        from dinosavi.evaluation.options import EvalOptions
        from dinosavi.evaluation.vos import segment_sequence

        frames, labels = _load(args)
        encoder = build_encoder(EncoderConfig(name="efficientnet_lite0", stride=args.stride))
        model = build_model(ModelConfig(), encoder.feature_dim).eval()
        rule = ResizeRule(short_side=480, multiple_of=encoder.patch_size)
        base = _rss_mb()
        t0 = time.perf_counter()
        feats = (f for chunk in frames.split(8) for f in encoder.encode(chunk, rule, 8).features)
        lock_on = args.run != "unsupervised"
        options = EvalOptions(lock_on=lock_on, track_mode="overlap" if args.run == "tracked" else None, num_bg_slots=4)
        segment_sequence(model, feats, labels[0] if lock_on else None, options,
                         size=(labels.shape[-2], labels.shape[-1]), generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - t0
    else:
        from benchmarks.baselines.propagate_dense import propagate_sequence_dense
        from dinosavi.evaluation.propagate import DINO, propagate_sequence

        data = torch.load(args.features)
        base = _rss_mb()
        fn = propagate_sequence if args.run == "chunked" else propagate_sequence_dense
        t0 = time.perf_counter()
        result = fn(data["features"], data["first"], data["patch_size"], DINO)
        seconds = time.perf_counter() - t0
        torch.save(result.labels.to(torch.uint8), args.out)
    frames_done = args.frames - 1 if args.run in ("chunked", "dense") else args.frames
    print(json.dumps({"seconds": seconds, "fps": frames_done / seconds, "peak_mb": _peak_mb(),
                      "delta_mb": _peak_mb() - base}))


def _spawn(args: argparse.Namespace, run: str, tmp: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--run", run, "--features", str(tmp / "features.pt"), "--out",
           str(tmp / f"{run}.pt"), "--frames", str(args.frames), "--stride", str(args.stride), "--sequence",
           args.sequence, "--data", str(args.data), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{run} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sequence", default="car-shadow")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--stride", type=int, default=8, choices=[8, 16])
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--run", choices=["chunked", "dense", "lockon", "tracked", "unsupervised"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--features", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        worker(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    frames, labels = _load(args)
    encoder = build_encoder(EncoderConfig(name="efficientnet_lite0", stride=args.stride))
    rule = ResizeRule(short_side=480, multiple_of=64)
    t0 = time.perf_counter()
    features = encoder.encode(frames, rule, 8).features
    encode_s = time.perf_counter() - t0
    T, D, h, w = features.shape
    print(f"{args.sequence}: {T} frames {tuple(frames.shape[-2:])} -> {rule.target_size(*frames.shape[-2:])}, "
          f"features D={D} {h}x{w} (stride {encoder.patch_size}), {torch.get_num_threads()} threads")
    print(f"encode: {T / encode_s:.2f} frames/s")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        torch.save({"features": features, "first": labels[0], "patch_size": encoder.patch_size},
                   tmp / "features.pt")
        stats = {run: _spawn(args, run, tmp) for run in ("chunked", "dense", "lockon", "tracked", "unsupervised")}
        a, b = torch.load(tmp / "chunked.pt"), torch.load(tmp / "dense.pt")
    differ = (a != b).float().mean().item()  # float rounding of two matmul orders may flip near-tied pixels
    if differ > 1e-4:
        raise AssertionError(f"chunked and dense propagation disagree on {differ:.2e} of the pixels")
    chunked, dense, lockon = stats["chunked"], stats["dense"], stats["lockon"]
    per_frame_encode = encode_s / T
    e2e = 1.0 / (per_frame_encode + 1.0 / chunked["fps"])
    for name, s in stats.items():
        print(f"{name:>12}: {s['fps']:7.2f} frames/s   peak RSS {s['peak_mb']:7.0f} MiB "
              f"(+{s['delta_mb']:.0f} MiB while running)")
    print(f"propagation only, chunked vs. dense: {chunked['fps'] / dense['fps']:.2f}x frames/s, "
          f"{dense['delta_mb'] / max(chunked['delta_mb'], 1.0):.1f}x less added memory, "
          f"pixels that differ: {differ:.1e}")
    print(f"propagate end to end (encode + propagate): {e2e:.2f} frames/s; "
          f"lock-on eval end to end: {lockon['fps']:.2f} frames/s "
          f"(ratio lock-on / propagate {lockon['fps'] / e2e:.2f}); "
          f"tracking costs {lockon['fps'] / stats['tracked']['fps']:.3f}x the time of plain lock-on")


if __name__ == "__main__":
    main()
