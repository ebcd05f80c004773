"""DAVIS unsupervised task: Hungarian matching of ground-truth objects to proposals on J&F.

Shapes: ``T`` frames, ``H, W`` pixels, ``K`` ground-truth objects, ``P`` proposals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

import dinosavi.metrics.compiled as compiled
from dinosavi.metrics.boundary import dilate_disk, layout, popcount_sum
from dinosavi.metrics.davis import _PLANE_BYTES, VOID_LABEL, _as_tensor, _check_masks, boundary_radius, f_from_counts
from dinosavi.metrics.joint import analyse, crop
from dinosavi.metrics.protocol import assign_proposals

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
    j_all, f_all = _pair_scores(g, p, K, P, boundary_radius(H, W, bound_th))
    j, f, ids = assign_proposals(j_all.cpu().numpy(), f_all.cpu().numpy(), n_prop)
    return Assignment(j=torch.from_numpy(j).to(g.device), f=torch.from_numpy(f).to(g.device),
                      proposal_ids=torch.from_numpy(ids))


def _pair_scores(
    gt: Tensor, proposals: Tensor, num_objects: int, num_proposals: int, radius: int
) -> tuple[Tensor, Tensor]:
    """J and F of every (proposal, object) pair: two (P, K, T) float64 tensors.

    One joint map of objects and proposals gives the (T, K+1, P+1) confusion counts (all pairwise J
    at once) and the boundary planes of every object and proposal; each plane is dilated once and
    ANDed with the planes of the other map, object by object. On CPU the compiled kernel computes them
    when it is built (same values).
    """
    T = gt.shape[0]
    K, P = num_objects, num_proposals
    if gt.device.type == "cpu" and compiled.available() and max(K, P) <= compiled.MAX_ID:
        q, k = torch.meshgrid(torch.arange(1, P + 1), torch.arange(1, K + 1), indexing="ij")
        pairs = torch.stack([k.flatten(), q.flatten()], 1).numpy()  # proposal-major
        j_np, f_np = compiled.pair_scores(gt.numpy(), proposals.numpy(), pairs, K, P, radius)
        return torch.from_numpy(j_np).view(P, K, T), torch.from_numpy(f_np).view(P, K, T)
    cropped = crop(gt, proposals, K)
    if cropped is None:  # nothing anywhere: every pair is two empty masks
        ones = torch.ones(P, K, T, dtype=torch.float64, device=gt.device)
        return ones, ones.clone()
    _, Hc, Wc = cropped.gt.shape
    guard, payload = layout(radius)
    frames = max(1, _PLANE_BYTES // (8 * (K + P) * Hc * -(-Wc // payload)))
    j_parts, f_parts = [], []
    for t0 in range(0, T, frames):
        part = replace(cropped, gt=cropped.gt[t0 : t0 + frames], pred=cropped.pred[t0 : t0 + frames])
        counts = analyse(part, K, P, radius)
        conf = counts.confusion.permute(2, 1, 0)[1:, 1:]  # (P, K, T'): proposal q, object k
        gt_area = counts.confusion.sum(2)[:, 1:].T  # (K, T')
        prop_area = counts.confusion.sum(1)[:, 1:].T  # (P, T')
        union = prop_area[:, None] + gt_area[None] - conf
        j_parts.append(torch.where(union == 0, torch.ones_like(union), conf / union.clamp(min=1)))
        dil = dilate_disk(torch.cat([counts.gt_planes, counts.pred_planes]).flatten(0, 1), radius, guard, payload)
        dil = dil.view(K + P, *counts.gt_planes.shape[1:])
        pred_match = torch.stack([popcount_sum((counts.pred_planes & dil[k]).flatten(0, 1)) for k in range(K)], 1)
        gt_match = torch.stack([popcount_sum((dil[K:] & counts.gt_planes[k]).flatten(0, 1)) for k in range(K)], 1)
        tt = counts.gt_planes.shape[1]
        f = f_from_counts(
            counts.n_pred[:, None].expand(P, K, tt),
            counts.n_gt[None].expand(P, K, tt),
            pred_match.view(P, tt, K).transpose(1, 2),
            gt_match.view(P, tt, K).transpose(1, 2),
        )
        f_parts.append(f)
    return torch.cat(j_parts, 2), torch.cat(f_parts, 2)
