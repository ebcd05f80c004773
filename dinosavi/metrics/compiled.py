"""The compiled J/F kernel (``_jf.c``, built by ``pip install`` when a C compiler is present).

NumPy in, NumPy out, no torch: ``mode=score`` runs on it without importing torch, and the torch
functions of :mod:`dinosavi.metrics.davis` and :mod:`dinosavi.metrics.matching` hand CPU inputs to
it. Its values equal the torch path's bit for bit (same integer counts, same float64 operations in
the same order); without the extension, :func:`available` is false and the torch path runs.

The algorithm, one frame at a time (``tests/metrics/reference.py`` states the same definitions plainly,
without packing, and the tests check the two agree bit for bit):

* J. One pass over both id maps counts every pixel into a confusion table ``conf[g, p]`` (its
  ground-truth id, its predicted id), reading 8 pixels as one 64-bit word and skipping words that are
  background in both. For a pair ``(k, q)``: intersection ``conf[k, q]``, union
  ``sum_p conf[k, p] + sum_g conf[g, q] - conf[k, q]``, J their ratio (1 when the union is empty).
* What is packed. The same pass notes the box of the non-zero ids. In that box (grown by one pixel up
  and left) a pixel is on the boundary of object ``k`` when ``k`` is among its own, east, south and
  south-east ids and those four are not all equal (DAVIS ``seg2bmap``, edge-replicated). Each
  object's boundary becomes one bit plane: one bit per pixel, 64 pixels per ``uint64`` word, the box's
  rows one after another; the number of set bits is the object's boundary length.
* F. A boundary pixel of one plane is matched when the other plane has a set bit in the disk
  ``dx**2 + dy**2 <= r**2`` around it. Row ``dy`` of the disk is the span ``x - w .. x + w`` with
  ``w = isqrt(r**2 - dy**2)``, tested by masking the words it covers; rows are tried centre first and
  the search stops at the first hit. Precision is the matched fraction of the prediction's boundary,
  recall that of the ground truth's, F = 2PR / (P + R), with the toolkit's conventions for empty
  boundaries (as :func:`dinosavi.metrics.davis.f_from_counts`).

The kernel releases the interpreter lock, so sequences can be scored in threads.

Shapes: ``T`` frames, ``H, W`` pixels, ``K`` ground-truth objects, ``P`` proposals, ``N`` pairs.
"""

from __future__ import annotations

import numpy as np

from dinosavi.metrics.protocol import assign_proposals, boundary_radius

try:
    import dinosavi.metrics._jf as _jf
except ImportError:  # installed without a C compiler: callers use the torch path
    _jf = None

__all__ = ["MAX_ID", "available", "pair_scores", "semisupervised", "unsupervised"]

MAX_ID = 255  # the kernel reads uint8 id maps


def available() -> bool:
    """Whether the compiled kernel was built and imports."""
    return _jf is not None


def _ids(x: np.ndarray, top: int) -> np.ndarray:
    """(T, H, W) C-contiguous uint8 ids; ids outside 0..``top`` become 0 unless already uint8 (the kernel
    treats ids above ``top`` as background itself)."""
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    return np.where((x < 0) | (x > top), 0, x).astype(np.uint8)


def pair_scores(
    gt: np.ndarray, pred: np.ndarray, pairs: np.ndarray, num_gt: int, num_pred: int, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """J and F per frame of every (ground-truth id, predicted id) pair.

    Ground-truth ids outside 1..``num_gt`` (void included) and predicted ids outside 1..``num_pred``
    count as background.

    Args:
        gt: (T, H, W) integer ids.
        pred: (T, H, W) integer ids.
        pairs: (N, 2) ids, ``(k, q)`` with ``1 <= k <= num_gt`` and ``1 <= q <= num_pred``.
        num_gt: K, at most 255.
        num_pred: P, at most 255.
        radius: boundary tolerance in pixels (:func:`dinosavi.metrics.protocol.boundary_radius`).

    Returns:
        ``(j, f)``, each (N, T) float64.

    Raises:
        RuntimeError: the kernel is not built (check :func:`available`).
        ValueError: shapes differ, ids above 255, or a pair outside the id ranges.
    """
    if _jf is None:
        raise RuntimeError("the compiled J/F kernel is not built (dinosavi.metrics._jf); use the torch path")
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"`gt` and `pred` must both be (T, H, W), got {gt.shape} and {pred.shape}")
    if num_gt > MAX_ID or num_pred > MAX_ID:
        raise ValueError(f"the compiled kernel takes ids up to {MAX_ID}, got {num_gt} and {num_pred} objects")
    pairs = np.ascontiguousarray(pairs, dtype=np.int32).reshape(-1, 2)
    j = np.empty((len(pairs), gt.shape[0]), dtype=np.float64)
    f = np.empty_like(j)
    _jf.jf_pairs(_ids(gt, num_gt), _ids(pred, num_pred), pairs, num_gt, num_pred, radius, j, f)
    return j, f


def semisupervised(
    gt: np.ndarray, pred: np.ndarray, num_objects: int, bound_th: float = 0.008
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object J and F under the DAVIS semi-supervised task (frames ``1..T-2``), as
    :func:`dinosavi.metrics.davis.evaluate_semisupervised`; the caller checks the ids.

    Args:
        gt: (T, H, W) integer ground-truth ids; void and ids above ``num_objects`` are background.
        pred: (T, H, W) predicted ids in 0..K.
        num_objects: K.
        bound_th: boundary tolerance, see :func:`dinosavi.metrics.davis.boundary_f`.

    Returns:
        ``(j, f)``, each (K, T-2) float64.

    Raises:
        ValueError: fewer than 3 frames or mismatched shapes.
    """
    if gt.ndim != 3 or gt.shape[0] < 3:
        raise ValueError(f"semi-supervised scoring needs (T, H, W) masks with T >= 3, got {gt.shape}")
    K = num_objects
    if K == 0:
        return np.zeros((0, gt.shape[0] - 2)), np.zeros((0, gt.shape[0] - 2))
    pairs = np.repeat(np.arange(1, K + 1, dtype=np.int32), 2).reshape(K, 2)
    radius = boundary_radius(gt.shape[1], gt.shape[2], bound_th)
    return pair_scores(gt[1:-1], pred[1:-1], pairs, K, K, radius)


def unsupervised(
    gt: np.ndarray, proposals: np.ndarray, num_objects: int, bound_th: float = 0.008
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The DAVIS unsupervised task on every frame, as :func:`dinosavi.metrics.matching.match_segments`;
    the caller checks the proposal ids.

    Args:
        gt: (T, H, W) integer ground-truth ids; void and ids above ``num_objects`` are background.
        proposals: (T, H, W) proposal ids 0..P.
        num_objects: K.
        bound_th: boundary tolerance.

    Returns:
        ``(j, f, ids)``: (K, T) J and F of the proposal matched to each object and its (K,) id (0: none).
    """
    T = gt.shape[0]
    K = num_objects
    if K == 0:
        return np.zeros((0, T)), np.zeros((0, T)), np.zeros(0, dtype=np.int64)
    n_prop = int(proposals.max())
    P = max(n_prop, K)  # the toolkit pads missing proposals with empty ones
    q, k = np.meshgrid(np.arange(1, P + 1), np.arange(1, K + 1), indexing="ij")
    pairs = np.stack([k.ravel(), q.ravel()], 1)  # (P*K, 2), proposal-major
    j_all, f_all = pair_scores(gt, proposals, pairs, K, P, boundary_radius(gt.shape[1], gt.shape[2], bound_th))
    return assign_proposals(j_all.reshape(P, K, T), f_all.reshape(P, K, T), n_prop)
