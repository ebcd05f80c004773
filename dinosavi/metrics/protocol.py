"""The DAVIS protocol's pieces that need no tensors: the void label, the boundary tolerance, the
per-object statistics, the Hungarian assignment of proposals, and the names of the object-discovery
scores. NumPy only, so that ``mode=score`` and the compiled kernel never import torch.

Shapes: ``T`` frames, ``K`` ground-truth objects, ``P`` proposals.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["DISCOVERY_METRICS", "VOID_LABEL", "assign_proposals", "boundary_radius", "db_statistics"]

VOID_LABEL = 255
# per sequence, unsupervised evaluation
DISCOVERY_METRICS = ("FG-ARI", "FG-ARI-frame", "FG-ARI-early", "FG-ARI-late", "mBO", "mBO-frame", "mIoU")


def boundary_radius(height: int, width: int, bound_th: float = 0.008) -> int:
    """Disk radius in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``.

    Raises:
        ValueError: a pixel radius (``bound_th >= 1``) that is not an integer, or a negative one.
    """
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a pixel radius and must be an integer, got {bound_th}")
        return int(bound_th)
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    return math.ceil(bound_th * math.hypot(height, width))


def db_statistics(per_frame: ArrayLike) -> tuple[float, float, float]:
    """Mean, recall and decay of a per-frame measure, as DAVIS ``db_statistics`` (``np.nanmean``).

    Mean is the NaN-ignoring mean; recall the NaN-ignoring mean of ``per_frame > 0.5`` (a NaN frame
    counts as not above); decay the mean of the first minus the mean of the last of 4 bins, bin ``i``
    spanning frames ``ids[i]..ids[i+1]`` inclusive with ``ids = round(linspace(1, T, 5) + 1e-10) - 1``.
    The toolkit stores ``ids`` as ``uint8``, which wraps for sequences longer than 256 frames; here
    the indices do not wrap.

    Args:
        per_frame: (T,) values (a NumPy array or a CPU tensor), NaN for frames to skip.

    Returns:
        ``(mean, recall, decay)`` as floats (NaN where a mean has no frames).
    """
    x = np.asarray(per_frame, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = float(np.nanmean(x))
        recall = float(np.nanmean(x > 0.5))
        decay = float(np.nanmean(x[ids[0] : ids[1] + 1]) - np.nanmean(x[ids[3] : ids[4] + 1]))
    return mean, recall, decay


def assign_proposals(
    j_all: np.ndarray, f_all: np.ndarray, num_proposals: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match objects to proposals maximising the mean over frames of (J + F) / 2 (Hungarian).

    Args:
        j_all: (P, K) + (T,) J of every (proposal, object) pair, ``P >= K`` (missing proposals padded
            with empty ones, as the toolkit does).
        f_all: (P, K, T) F of every pair.
        num_proposals: the real proposals; matches to padding ids above it report id 0.

    Returns:
        ``(j, f, ids)``: (K, T) J and F of the matched proposal per object (zeros when unmatched) and
        the (K,) matched proposal id, 0 when unmatched.
    """
    from scipy.optimize import linear_sum_assignment

    _, K, T = j_all.shape
    rows, cols = linear_sum_assignment(-((j_all.mean(axis=2) + f_all.mean(axis=2)) / 2))
    j, f = np.zeros((K, T)), np.zeros((K, T))
    ids = np.zeros(K, dtype=np.int64)
    for r, c in zip(rows.tolist(), cols.tolist()):
        j[c], f[c] = j_all[r, c], f_all[r, c]
        ids[c] = r + 1 if r < num_proposals else 0
    return j, f, ids
