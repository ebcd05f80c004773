"""Regions of a frame that need no labels: k-means on frozen features, batched and deterministic, and their
course through the next frames by label propagation on the same features.

Slot attention is soft k-means with learned projections (Locatello et al., 2020), so k-means regions of the
frozen features are the natural label-free stand-in for objects: the k-means reference of unsupervised
evaluation, the pseudo-masks that train a conditioned slot initialiser, and the split of an unannotated
background into regions at lock-on all come from here.

Seeding is k-means++ (Arthur & Vassilvitskii, 2007) when a random generator is given, else farthest-point
(Gonzalez, 1985), its deterministic cousin: the first centre is the point farthest from the set's mean,
each next one the point farthest from the centres so far. Farthest-point seeding needs no random draw, so
a training batch gives the same regions on every process and device.

:func:`carry_regions` follows the regions of a clip's first frame through its later frames the way label
propagation follows first-frame masks (DINO's ``eval_video_segmentation.py``, Caron et al. 2021): every patch
of frame ``t`` takes the average label of its ``topk`` most similar patches (cosine of the frozen features)
among frames ``0..t-1``, softmax-weighted with a temperature. It needs no labels, so it can train slots to
keep their regions.

Shapes: ``B`` point sets (frames), ``N`` points (patches), ``D`` channels, ``K`` clusters (``S`` regions),
``T`` frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["carry_regions", "kmeans", "kmeans_regions"]


def _seed_farthest(x: Tensor, k: int, valid: Tensor) -> Tensor:
    """``(B, K, D)`` farthest-point centres of ``x: (B, N, D)`` among its ``valid: (B, N)`` points."""
    B = x.shape[0]
    rows = torch.arange(B, device=x.device)
    far = torch.finfo(x.dtype).max
    mean = (x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)  # (B, D)
    d = torch.where(valid, (x - mean[:, None]).square().sum(-1), -far)
    centres = [x[rows, d.argmax(1)]]
    nearest = torch.full_like(d, far)
    for _ in range(k - 1):
        nearest = torch.minimum(nearest, (x - centres[-1][:, None]).square().sum(-1))
        centres.append(x[rows, torch.where(valid, nearest, -far).argmax(1)])
    return torch.stack(centres, dim=1)


def _seed_plusplus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``(B, K, D)`` k-means++ centres of ``x: (B, N, D)``, drawn from ``generator`` (CPU)."""
    B, N, _ = x.shape
    rows = torch.arange(B, device=x.device)
    first = torch.randint(N, (B,), generator=generator).to(x.device)
    centres = x[rows, first][:, None]  # (B, 1, D)
    for _ in range(k - 1):
        d2 = torch.cdist(x, centres).amin(-1).square()  # (B, N): distance to the nearest centre
        weights = torch.where(d2.sum(1, keepdim=True) > 0, d2, torch.ones_like(d2))
        pick = torch.multinomial(weights.cpu(), 1, generator=generator)[:, 0].to(x.device)
        centres = torch.cat([centres, x[rows, pick][:, None]], dim=1)
    return centres


def kmeans(points: Tensor, k: int, iters: int = 30, generator: torch.Generator | None = None,
           valid: Tensor | None = None) -> Tensor:
    """Lloyd's k-means, batched over independent point sets.

    Args:
        points: ``(B, N, D)`` float: ``B`` sets of ``N`` points.
        k: clusters per set, ``1 <= k <= N``.
        iters: the most Lloyd iterations (it stops once no assignment changes).
        generator: random source of k-means++ seeding (CPU); farthest-point seeding when None.
        valid: ``(B, N)`` bool, the points to cluster (all when None); the others get cluster -1. A set
            with fewer valid points than ``k`` leaves some clusters empty. Only with farthest-point seeding.

    Returns:
        ``(B, N)`` int64 cluster of every point, ``-1`` for invalid points.

    Raises:
        ValueError: ``k`` out of range, or both ``generator`` and ``valid``.
    """
    B, N, _ = points.shape
    if not 1 <= k <= N:
        raise ValueError(f"k-means needs 1 <= k <= {N} points, got k={k}")
    if generator is not None and valid is not None:
        raise ValueError("k-means takes valid points with farthest-point seeding only (generator=None)")
    x = points.float()
    ok = torch.ones(B, N, dtype=torch.bool, device=x.device) if valid is None else valid.to(x.device)
    centres = _seed_farthest(x, k, ok) if generator is None else _seed_plusplus(x, k, generator)
    assign = torch.cdist(x, centres).argmin(-1)
    for _ in range(iters):
        onehot = F.one_hot(assign, k).to(x.dtype) * ok[..., None]  # (B, N, K)
        counts = onehot.sum(1)[..., None]  # (B, K, 1)
        means = torch.einsum("bnk,bnd->bkd", onehot, x) / counts.clamp(min=1)
        centres = torch.where(counts > 0, means, centres)  # an empty cluster keeps its centre
        new = torch.cdist(x, centres).argmin(-1)
        if torch.equal(new, assign):
            break
        assign = new
    return torch.where(ok, assign, -1)


def kmeans_regions(features: Tensor, k: int, iters: int = 10, valid: Tensor | None = None) -> Tensor:
    """``k`` regions of each frame: k-means of its layer-normalised features, as one mask per cluster.

    Args:
        features: ``(B, N, D)`` frozen features (tokens of one frame per row).
        k: regions per frame.
        iters: Lloyd iterations.
        valid: ``(B, N)`` bool, the patches to split (all when None); the others belong to no region.

    Returns:
        ``(B, K, N)`` bool masks, disjoint; a region may be empty when fewer than ``k`` patches are valid.
    """
    x = F.layer_norm(features.float(), features.shape[-1:])
    assign = kmeans(x, k, iters, valid=valid)
    return assign[:, None, :] == torch.arange(k, device=assign.device)[None, :, None]


def carry_regions(regions: Tensor, features: Tensor, topk: int = 5, temperature: float = 0.1) -> Tensor:
    """The first frame's regions carried through a clip by label propagation on its frozen features.

    Args:
        regions: ``(B, S, N)`` soft or boolean regions of frame 0.
        features: ``(B, T, N, D)`` frozen features of the clip's frames.
        topk: context patches each patch takes its label from.
        temperature: softmax temperature of their cosine similarities.

    Returns:
        ``(B, T, S, N)`` soft regions, each patch's summing to its frame-0 total (1 for a partition); frame 0
        is ``regions``. No gradient flows through it.
    """
    with torch.no_grad():
        x = F.normalize(features.float(), dim=-1)
        labels = [regions.float()]
        for t in range(1, x.shape[1]):
            affinity = torch.einsum("bnd,bmd->bnm", x[:, t], x[:, :t].flatten(1, 2))  # (B, N, t*N)
            top, index = affinity.topk(min(topk, affinity.shape[-1]), dim=-1)  # (B, N, k)
            weights = (top / temperature).softmax(-1)
            context = torch.cat(labels, dim=-1)  # (B, S, t*N)
            gathered = torch.gather(context[:, None].expand(-1, index.shape[1], -1, -1), 3,
                                    index[:, :, None].expand(-1, -1, context.shape[1], -1))  # (B, N, S, k)
            labels.append(torch.einsum("bnk,bnsk->bsn", weights, gathered))
        return torch.stack(labels, dim=1)
