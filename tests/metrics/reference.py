"""A plain NumPy statement of DAVIS J and F, to test the bit-packed kernels against: no OpenCV, no packing.

One frame and one pair of binary masks at a time, straight from the definitions:

* J is ``|gt & pred| / |gt | pred|``, 1 when the union is empty;
* the boundary of a mask (DAVIS ``seg2bmap``) is every pixel that differs from its east, south or
  south-east neighbour, the image edge-replicated;
* a boundary pixel matches when a boundary pixel of the other mask lies in the disk
  ``dx**2 + dy**2 <= r**2`` around it; precision is the matched fraction of the prediction's
  boundary, recall that of the ground truth's, F their harmonic mean, with the toolkit's conventions
  for empty boundaries (both empty: 1; one empty: 0).

It also unpacks the bit planes of :mod:`dinosavi.metrics.boundary` so the kernels' intermediates can be
compared with it. Shapes: ``T`` frames, ``N`` planes, ``H, W`` pixels, ``Wp`` words per plane row.
"""

from __future__ import annotations

import math

import numpy as np

from dinosavi.metrics.boundary import layout

__all__ = [
    "boundary_map",
    "dilate",
    "f_measure",
    "frame_boundary_f",
    "frame_jaccard",
    "pack_planes",
    "pair_scores",
    "unpack_planes",
]


def frame_jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """J of two (H, W) binary masks."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = int((gt | pred).sum())
    return 1.0 if union == 0 else int((gt & pred).sum()) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of an (H, W) mask that differ from their E, S or SE neighbour (edge-replicated)."""
    m = mask.astype(bool)
    padded = np.pad(m, ((0, 1), (0, 1)), mode="edge")
    return (m != padded[:-1, 1:]) | (m != padded[1:, :-1]) | (m != padded[1:, 1:])


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool: the pixels within the disk ``dx**2 + dy**2 <= radius**2`` of a pixel of the (H, W) mask."""
    H, W = mask.shape
    m = mask.astype(bool)
    out = np.zeros_like(m)
    for dy in range(-min(radius, H - 1), min(radius, H - 1) + 1):
        reach = min(math.isqrt(radius * radius - dy * dy), W - 1)
        for dx in range(-reach, reach + 1):  # out[y, x] |= m[y - dy, x - dx]
            out[max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] |= (
                m[max(-dy, 0) : H - max(dy, 0), max(-dx, 0) : W - max(dx, 0)]
            )
    return out


def f_measure(n_pred: int, n_gt: int, pred_match: int, gt_match: int) -> float:
    """F from boundary pixel counts, with the toolkit's conventions for empty boundaries."""
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision, recall = pred_match / n_pred, gt_match / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def frame_boundary_f(gt: np.ndarray, pred: np.ndarray, radius: int) -> float:
    """F of two (H, W) binary masks within a disk of ``radius`` pixels."""
    gb, pb = boundary_map(gt), boundary_map(pred)
    pred_match = int((pb & dilate(gb, radius)).sum())
    gt_match = int((gb & dilate(pb, radius)).sum())
    return f_measure(int(pb.sum()), int(gb.sum()), pred_match, gt_match)


def pair_scores(gt: np.ndarray, pred: np.ndarray, pairs: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """J and F per frame of ``gt == k`` against ``pred == q`` for every pair ``(k, q)``.

    Args:
        gt: (T, H, W) integer ids.
        pred: (T, H, W) integer ids.
        pairs: (N, 2) ids ``(k, q)``.
        radius: boundary tolerance in pixels.

    Returns:
        ``(j, f)``, each (N, T) float64.
    """
    N, T = len(pairs), len(gt)
    j, f = np.zeros((N, T)), np.zeros((N, T))
    for n, (k, q) in enumerate(np.asarray(pairs).tolist()):
        for t in range(T):
            j[n, t] = frame_jaccard(gt[t] == k, pred[t] == q)
            f[n, t] = frame_boundary_f(gt[t] == k, pred[t] == q, radius)
    return j, f


def unpack_planes(planes: np.ndarray, width: int, radius: int) -> np.ndarray:
    """The payload bits of (N, H, Wp) int64 planes in the :func:`~dinosavi.metrics.boundary.layout` of
    ``radius`` as (N, H, width) bool: pixel ``x`` is bit ``guard + x % payload`` of word ``x // payload``."""
    guard, payload = layout(radius)
    x = np.arange(width)
    words = planes.view(np.uint64)[..., x // payload]
    return ((words >> (guard + x % payload).astype(np.uint64)) & np.uint64(1)).astype(bool)


def pack_planes(mask: np.ndarray, radius: int) -> np.ndarray:
    """(N, H, W) binary masks as (N, H, ceil(W / payload)) int64 planes with zero guard bits (inverse of
    :func:`unpack_planes`)."""
    guard, payload = layout(radius)
    N, H, W = mask.shape
    out = np.zeros((N, H, -(-W // payload)), np.uint64)
    for x in range(W):
        out[..., x // payload] |= mask[..., x].astype(np.uint64) << np.uint64(guard + x % payload)
    return out.view(np.int64)


def random_id_maps(rng: np.random.Generator, shape: tuple[int, int, int], k: int, noise: float = 0.05,
                   lowest_noise_id: int = 0, dtype: type = np.uint8) -> np.ndarray:
    """``(T, H, W)`` test id maps: rectangles of ids 1..k, some cut by the image border, over sparse noise
    (a ``noise`` share of pixels with ids ``lowest_noise_id..k``)."""
    T, H, W = shape
    out = np.where(rng.random(shape) < noise, rng.integers(lowest_noise_id, k + 1, shape), 0).astype(dtype)
    for obj in range(1, k + 1):
        for t in range(T):
            y, x = rng.integers(-3, H), rng.integers(-3, W)
            out[t, max(y, 0) : y + rng.integers(1, H // 2 + 2), max(x, 0) : x + rng.integers(1, W // 2 + 2)] = obj
    return out
