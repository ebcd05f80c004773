"""Reference DAVIS J/F scoring: per frame, per object, NumPy + OpenCV.

A deliberately plain re-statement of the DAVIS 2017 evaluation definitions, computed one frame
and one object at a time the way the official toolkit does it (boolean shifts for the boundary
map, ``cv2.dilate`` with a disk for the tolerance). It exists only as the parity reference and the
speed baseline for :mod:`dinosavi.metrics.davis`; it is not part of the package.
"""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "boundary_map",
    "db_statistics",
    "disk",
    "evaluate_semisupervised",
    "evaluate_unsupervised",
    "frame_boundary_f",
    "frame_jaccard",
]


def disk(radius: int) -> np.ndarray:
    """Disk structuring element ``x**2 + y**2 <= radius**2``: (2r+1, 2r+1) uint8."""
    offsets = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(offsets, offsets)
    return (xx**2 + yy**2 <= radius**2).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask (H, W): a pixel differing from its E, S or SE neighbour.

    The last row only compares with the east neighbour, the last column only with the south
    neighbour, and the bottom-right pixel is never a boundary.
    """
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def frame_jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """IoU of two (H, W) binary masks outside ``void``; 1 when the union is empty."""
    valid = np.ones(gt.shape, dtype=bool) if void is None else ~void.astype(bool)
    gt = gt.astype(bool)
    pred = pred.astype(bool)
    inter = np.count_nonzero(gt & pred & valid)
    union = np.count_nonzero((gt | pred) & valid)
    return 1.0 if union == 0 else inter / union


def frame_boundary_f(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008
) -> float:
    """Boundary F-measure of two (H, W) binary masks with a disk tolerance."""
    radius = int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape))
    valid = np.ones(gt.shape, dtype=bool) if void is None else ~void.astype(bool)
    gt_b = boundary_map(gt.astype(bool) & valid)
    pred_b = boundary_map(pred.astype(bool) & valid)
    kernel = disk(radius)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
    n_pred = np.count_nonzero(pred_b)
    n_gt = np.count_nonzero(gt_b)
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = np.count_nonzero(pred_b & gt_dil) / n_pred
        recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay (first minus last of 4 inclusive bins) of a (T,) series."""
    n_bins = 4
    edges = (np.round(np.linspace(1, len(per_frame), n_bins + 1) + 1e-10) - 1).astype(np.int64)
    quarters = [per_frame[edges[i] : edges[i + 1] + 1] for i in range(n_bins)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = float(np.nanmean(per_frame))
        recall = float(np.nanmean(per_frame > 0.5))
        decay = float(np.nanmean(quarters[0]) - np.nanmean(quarters[-1]))
    return mean, recall, decay


def evaluate_semisupervised(
    gt: np.ndarray, pred: np.ndarray, num_objects: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object J and F over frames 1..T-2 of (T, H, W) label maps: two (K, T-2) arrays."""
    gt = np.where(gt == 255, 0, gt)
    k = int(gt[0].max()) if num_objects is None else num_objects
    gt, pred = gt[1:-1], pred[1:-1]
    if pred.size and int(pred.max()) > k:
        raise ValueError(f"prediction id {int(pred.max())} exceeds the {k} annotated objects")
    j = np.zeros((k, gt.shape[0]))
    f = np.zeros((k, gt.shape[0]))
    for obj in range(k):
        for t in range(gt.shape[0]):
            j[obj, t] = frame_jaccard(gt[t] == obj + 1, pred[t] == obj + 1)
            f[obj, t] = frame_boundary_f(gt[t] == obj + 1, pred[t] == obj + 1)
    return j, f


def evaluate_unsupervised(
    gt: np.ndarray, proposals: np.ndarray, max_proposals: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian match of GT objects to proposals on mean (J+F)/2 over all frames.

    Returns:
        Per-object J (K, T), per-object F (K, T) of the matched proposal (zeros when unmatched),
        and the matched proposal id per object (0 when unmatched).
    """
    gt = np.where(gt == 255, 0, gt)
    k = int(gt[0].max())
    p = int(proposals.max())
    if p > max_proposals:
        raise ValueError(f"proposal id {p} exceeds max_proposals={max_proposals}")
    n_t = gt.shape[0]
    j = np.zeros((max(p, k), k, n_t))
    f = np.zeros((max(p, k), k, n_t))
    for i in range(k):
        for jj in range(max(p, k)):
            for t in range(n_t):
                j[jj, i, t] = frame_jaccard(gt[t] == i + 1, proposals[t] == jj + 1)
                f[jj, i, t] = frame_boundary_f(gt[t] == i + 1, proposals[t] == jj + 1)
    score = (j.mean(axis=2) + f.mean(axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    j_out = np.zeros((k, n_t))
    f_out = np.zeros((k, n_t))
    ids = np.zeros(k, dtype=np.int64)
    for r, c in zip(rows, cols):
        j_out[c] = j[r, c]
        f_out[c] = f[r, c]
        ids[c] = r + 1 if r < p else 0
    return j_out, f_out, ids
