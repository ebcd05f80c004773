"""DAVIS unsupervised protocol: Hungarian matching of ground-truth objects to proposals on J&F.

Shapes: ``T`` frames, ``H, W`` pixels, ``K`` ground-truth objects, ``P`` proposals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from dinosavi.metrics.davis import VOID_LABEL, _as_tensor, _check_masks, _scores, boundary_radius

__all__ = ["Assignment", "match_segments"]


@dataclass(frozen=True)
class Assignment:
    """Result of matching ground-truth objects to proposals.

    Attributes:
        j: (K, T) J of the proposal matched to each object (zeros when unmatched), float64.
        f: (K, T) F of the matched proposal, float64.
        proposal_ids: (K,) matched proposal id per object, 0 when unmatched.
    """

    j: Tensor
    f: Tensor
    proposal_ids: Tensor


def match_segments(
    gt: Tensor | np.ndarray,
    proposals: Tensor | np.ndarray,
    max_proposals: int = 20,
    num_objects: int | None = None,
    bound_th: float = 0.008,
) -> Assignment:
    """Match objects to proposals by maximising the mean of (J + F) / 2 over all frames.

    Every frame is scored. Void (255) counts as background: the toolkit does pass a void mask in
    unsupervised mode, but computes it from annotations already binarised with 255 set to 0, so it
    is always empty; this function reproduces that behaviour. Results are ordered by object id.

    Args:
        gt: (T, H, W) integer object ids, 0 background.
        proposals: (T, H, W) integer proposal ids 0..P.
        max_proposals: the largest proposal id allowed.
        num_objects: K; by default the largest id in the first frame, as the toolkit.
        bound_th: boundary tolerance, see :func:`dinosavi.metrics.davis.boundary_f`.

    Returns:
        Per-object J/F of the matched proposals and the matched ids.

    Raises:
        ValueError: mismatched shapes or a proposal id above ``max_proposals``.
    """
    g, p = _as_tensor(gt, "gt"), _as_tensor(proposals, "proposals")
    _check_masks(g, p, None)
    p = p.to(g.device)
    if num_objects is None:
        num_objects = int(torch.where(g[0] == VOID_LABEL, 0, g[0]).max())
    n_prop = int(p.max())
    if n_prop > max_proposals or int(p.min()) < 0:
        raise ValueError(f"proposal ids must lie in 0..{max_proposals} (max_proposals), got {n_prop}")
    T, H, W = g.shape
    K = num_objects
    if K == 0:
        empty = torch.zeros(0, T, dtype=torch.float64, device=g.device)
        return Assignment(j=empty, f=empty.clone(), proposal_ids=torch.zeros(0, dtype=torch.int64))
    P = max(n_prop, K)  # the toolkit pads missing proposals with empty ones
    radius = boundary_radius(H, W, bound_th)
    gt_masks = [(g == k).to(torch.uint8) for k in range(1, K + 1)]  # K x (T, H, W)
    j_all = torch.zeros(P, K, T, dtype=torch.float64, device=g.device)
    f_all = torch.zeros_like(j_all)
    for q in range(1, P + 1):  # proposals above n_prop are the toolkit's empty padding
        prop_mask = (p == q).to(torch.uint8)
        for k, gt_mask in enumerate(gt_masks):
            j, f = _scores(gt_mask, prop_mask, 1, radius)
            j_all[q - 1, k], f_all[q - 1, k] = j[0], f[0]
    score = ((j_all.mean(dim=2) + f_all.mean(dim=2)) / 2).cpu().numpy()
    rows, cols = linear_sum_assignment(-score)
    j_out = torch.zeros(K, T, dtype=torch.float64, device=g.device)
    f_out = torch.zeros_like(j_out)
    ids = torch.zeros(K, dtype=torch.int64)
    for r, c in zip(rows.tolist(), cols.tolist()):
        j_out[c] = j_all[r, c]
        f_out[c] = f_all[r, c]
        ids[c] = r + 1 if r < n_prop else 0
    return Assignment(j=j_out, f=f_out, proposal_ids=ids)
