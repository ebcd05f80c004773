"""Benchmark DAVIS J/F scoring at 480p: dinosavi.metrics (torch, batched) vs. the per-frame NumPy/OpenCV baseline.

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
    parser.add_argument("--proposals", type=int, default=6, help="also time the unsupervised protocol (0: skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gt, pred = load_clip(args.data, args.frames)
    gt, pred = gt.astype(args.dtype), pred.astype(args.dtype)
    n_obj, n_eval = 2, args.frames - 2
    gt_t = torch.from_numpy(gt).to(args.device)
    pred_t = torch.from_numpy(pred).to(args.device)

    def ours() -> tuple[torch.Tensor, torch.Tensor]:
        s = evaluate_semisupervised(gt_t, pred_t)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return s.j, s.f

    Scores = tuple[np.ndarray, np.ndarray]

    def interleaved(repeats: int) -> tuple[Scores, tuple[torch.Tensor, torch.Tensor], float, float]:
        """Baseline and ours alternately, ``repeats`` times each; median seconds of each."""
        base_out, ours_out = davis_numpy.evaluate_semisupervised(gt, pred), ours()
        t_base, t_ours = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            base_out = davis_numpy.evaluate_semisupervised(gt, pred)
            t1 = time.perf_counter()
            ours_out = ours()
            t2 = time.perf_counter()
            t_base.append(t1 - t0)
            t_ours.append(t2 - t1)
        return base_out, ours_out, float(np.median(t_base)), float(np.median(t_ours))

    (j_b, f_b), (j_o, f_o), t_base, t_ours = interleaved(args.repeats)
    diff = max(np.abs(j_o.cpu().numpy() - j_b).max(), np.abs(f_o.cpu().numpy() - f_b).max())
    per = n_obj * n_eval
    print(
        f"{n_obj} objects x {n_eval} evaluated frames at {gt.shape[1]}x{gt.shape[2]}, device={args.device}, "
        f"dtype={args.dtype}, torch threads={torch.get_num_threads()}"
    )
    print(f"J mean {j_b.mean():.4f}  F mean {f_b.mean():.4f}  max |ours - baseline| = {diff:.3e}")
    print(f"median of {args.repeats} interleaved runs each")
    print(f"baseline (numpy+cv2, per frame/object): {t_base / per * 1e3:.3f} ms/frame/object")
    print(f"ours (torch, batched):                  {t_ours / per * 1e3:.3f} ms/frame/object")
    print(f"speed-up: {t_base / t_ours:.1f}x")
    if diff > 1e-9:
        raise SystemExit(f"values differ from the baseline by {diff}")
    if args.proposals:
        unsupervised(gt, pred, args.proposals, args.device)


def unsupervised(gt: np.ndarray, pred: np.ndarray, num_proposals: int, device: str) -> None:
    """The DAVIS unsupervised protocol: ``num_proposals`` segments (the prediction's objects, the rest cut
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
