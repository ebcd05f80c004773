"""Benchmark DAVIS J/F scoring at 480p: dinosavi.metrics (the compiled kernel when built, and the torch path)
vs. the per-frame NumPy/OpenCV baseline.

Run from the repository root: ``python benchmarks/bench_metrics.py [--device cpu]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines import davis_numpy
from dinosavi.metrics import compiled
from dinosavi.metrics.davis import evaluate_semisupervised
from dinosavi.metrics.matching import match_segments

DATA = Path("/work/shared/data/davis-sample/Annotations/480p")


def load_clip(root: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-object (T, H, W) uint8 ground truth and a prediction eroded, shifted and partly emptied from it."""
    seqs = sorted(p for p in root.iterdir() if p.is_dir())
    if len(seqs) < 2:
        raise FileNotFoundError(f"need 2 sequences under {root}, found {len(seqs)}")
    a = [np.array(Image.open(f)) > 0 for f in sorted(seqs[0].glob("*.png"))[:frames]]
    b = [np.array(Image.open(f)) > 0 for f in sorted(seqs[1].glob("*.png"))[:frames]]
    if len(a) < frames or len(b) < frames:
        raise FileNotFoundError(f"need {frames} annotated frames in {seqs[0]} and {seqs[1]}")
    gt = np.zeros((frames, *a[0].shape), np.uint8)
    pred = np.zeros_like(gt)
    for t in range(frames):
        gt[t][b[t]] = 2
        gt[t][a[t]] = 1
        pa = ndimage.binary_erosion(a[t], iterations=2 + t % 3)
        pb = np.roll(ndimage.binary_dilation(b[t], iterations=1 + t % 2), 3 + t % 5, axis=1)
        if t % 7 == 3:  # partly emptied: object 2 loses its left half, or object 1 vanishes
            pb[:, : pb.shape[1] // 2] = False
        if t % 11 == 5:
            pa[:] = False
        pred[t][pb] = 2
        pred[t][pa] = 1
    return gt, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--dtype", choices=["uint8", "int64"], default="uint8", help="label map dtype")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--proposals", type=int, default=6, help="also time the unsupervised task (0: skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gt, pred = load_clip(args.data, args.frames)
    gt, pred = gt.astype(args.dtype), pred.astype(args.dtype)
    n_obj, n_eval = 2, args.frames - 2
    gt_t = torch.from_numpy(gt).to(args.device)
    pred_t = torch.from_numpy(pred).to(args.device)

    def ours(kernel: str) -> tuple[np.ndarray, np.ndarray]:
        saved = compiled._jf
        if kernel == "torch":
            compiled._jf = None  # the torch path, as without the compiled extension
        try:
            s = evaluate_semisupervised(gt_t, pred_t)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        finally:
            compiled._jf = saved
        return s.j.cpu().numpy(), s.f.cpu().numpy()

    kernels = (["compiled"] if compiled.available() and args.device == "cpu" else []) + ["torch"]
    runs: dict[str, list[float]] = {name: [] for name in ["baseline", *kernels]}
    outputs = {"baseline": davis_numpy.evaluate_semisupervised(gt, pred), **{k: ours(k) for k in kernels}}
    for _ in range(args.repeats):  # interleaved: baseline, compiled, torch, baseline, ...
        for name in runs:
            t0 = time.perf_counter()
            outputs[name] = davis_numpy.evaluate_semisupervised(gt, pred) if name == "baseline" else ours(name)
            runs[name].append(time.perf_counter() - t0)
    median = {name: float(np.median(ts)) for name, ts in runs.items()}
    j_b, f_b = outputs["baseline"]
    per = n_obj * n_eval
    print(
        f"{n_obj} objects x {n_eval} evaluated frames at {gt.shape[1]}x{gt.shape[2]}, device={args.device}, "
        f"dtype={args.dtype}, torch threads={torch.get_num_threads()}"
    )
    print(f"J mean {j_b.mean():.4f}  F mean {f_b.mean():.4f}; median of {args.repeats} interleaved runs each")
    print(f"baseline (numpy+cv2, per frame/object): {median['baseline'] / per * 1e3:.3f} ms/frame/object")
    for k in kernels:
        j_o, f_o = outputs[k]
        diff = max(np.abs(j_o - j_b).max(), np.abs(f_o - f_b).max())
        print(f"ours, {k + ' kernel' if k == 'compiled' else 'torch path':<15}:        "
              f"{median[k] / per * 1e3:.3f} ms/frame/object   speed-up {median['baseline'] / median[k]:.1f}x   "
              f"max |ours - baseline| = {diff:.1e}")
        if diff > 1e-9:
            raise SystemExit(f"{k}: values differ from the baseline by {diff}")
    if args.proposals:
        unsupervised(gt, pred, args.proposals, args.device)


def unsupervised(gt: np.ndarray, pred: np.ndarray, num_proposals: int, device: str) -> None:
    """The DAVIS unsupervised task: ``num_proposals`` segments (the prediction's objects, the rest cut
    from the background in vertical stripes) Hungarian-matched to the objects; ours vs. the baseline once."""
    proposals = pred.astype(np.int64)
    stripes = np.linspace(0, gt.shape[2], num_proposals - 1, dtype=np.int64)
    for i in range(num_proposals - 2):
        band = proposals[:, :, stripes[i] : stripes[i + 1]]
        band[band == 0] = 3 + i
    gt_t, prop_t = torch.from_numpy(gt.astype(np.int64)).to(device), torch.from_numpy(proposals).to(device)
    match_segments(gt_t, prop_t)  # warm-up
    t0 = time.perf_counter()
    j_b, f_b, ids_b = davis_numpy.evaluate_unsupervised(gt, proposals)
    t1 = time.perf_counter()
    matched = match_segments(gt_t, prop_t)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    diff = max(np.abs(matched.j.cpu().numpy() - j_b).max(), np.abs(matched.f.cpu().numpy() - f_b).max())
    print(f"unsupervised, {int(proposals.max())} proposals x 2 objects x {len(gt)} frames: baseline {t1 - t0:.2f} s, "
          f"ours {t2 - t1:.3f} s, speed-up {(t1 - t0) / (t2 - t1):.1f}x, max |diff| {diff:.1e}, "
          f"same matches: {matched.proposal_ids.tolist() == ids_b.tolist()}")
    if diff > 1e-9:
        raise SystemExit(f"unsupervised values differ from the baseline by {diff}")


if __name__ == "__main__":
    main()
