"""A segmentation that needs no learning, on the same frames as a slot model: k-means on frozen features.

A slot model that does not beat k-means on the features it binds has not learned to bind: slot attention
is soft k-means with learned projections (Locatello et al., 2020), so k-means with ``K`` = the slot count
on the layer-normalised features is the floor a trained model must clear. Label propagation with the same
encoder (:mod:`dinosavi.evaluation.propagate`) is the lock-on reference.

Shapes: ``T`` frames, ``D`` channels, ``h, w`` feature grid, ``N = h*w``, ``K`` clusters, ``H, W`` pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from dinosavi.data.davis import SequenceDataset
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.evaluation.runner import frame_features
from dinosavi.features.space import FeatureSpace
from dinosavi.metrics.objects import discovery_scores, fg_ari_per_frame
from dinosavi.metrics.protocol import VOID_LABEL
from dinosavi.metrics.results import DiscoveryTable

__all__ = ["kmeans", "kmeans_reference", "kmeans_segments"]


def kmeans(points: Tensor, k: int, iters: int = 30, generator: torch.Generator | None = None) -> Tensor:
    """k-means with k-means++ seeding (Arthur & Vassilvitskii, 2007), batched over independent point sets.

    Args:
        points: ``(T, N, D)`` float: ``T`` sets of ``N`` points.
        k: clusters per set, ``1 <= k <= N``.
        iters: Lloyd iterations.
        generator: random source of the seeding (CPU).

    Returns:
        ``(T, N)`` int64 cluster of every point.
    """
    T, N, _ = points.shape
    if not 1 <= k <= N:
        raise ValueError(f"k-means needs 1 <= k <= {N} points, got k={k}")
    x = points.float()
    rows = torch.arange(T, device=x.device)
    first = torch.randint(N, (T,), generator=generator).to(x.device)
    centres = x[rows, first][:, None]  # (T, 1, D)
    for _ in range(k - 1):
        d2 = torch.cdist(x, centres).amin(-1).square()  # (T, N): distance to the nearest centre
        weights = torch.where(d2.sum(1, keepdim=True) > 0, d2, torch.ones_like(d2))
        pick = torch.multinomial(weights.cpu(), 1, generator=generator)[:, 0].to(x.device)
        centres = torch.cat([centres, x[rows, pick][:, None]], dim=1)
    assign = torch.cdist(x, centres).argmin(-1)
    for _ in range(iters):
        onehot = F.one_hot(assign, k).to(x.dtype)  # (T, N, K)
        counts = onehot.sum(1)[..., None]  # (T, K, 1)
        means = torch.einsum("tnk,tnd->tkd", onehot, x) / counts.clamp(min=1)
        centres = torch.where(counts > 0, means, centres)  # an empty cluster keeps its centre
        new = torch.cdist(x, centres).argmin(-1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


def kmeans_segments(
    features: Tensor, k: int, size: tuple[int, int], iters: int = 30, generator: torch.Generator | None = None
) -> Tensor:
    """Per-frame k-means segments of layer-normalised features, as predicted ids at pixel resolution.

    Args:
        features: ``(T, D, h, w)`` frozen features.
        k: clusters per frame (the slot count of the model it is compared with).
        size: ``(H, W)`` of the output; each pixel takes the cluster of its patch (nearest neighbour).
        iters: Lloyd iterations.
        generator: random source of the seeding.

    Returns:
        ``(T, H, W)`` int64 ids ``1..k``; ids are per frame (cluster ``j`` of two frames need not match).
    """
    h = features.shape[-2]
    x = F.layer_norm(rearrange(features.float(), "t d h w -> t (h w) d"), features.shape[1:2])
    clusters = rearrange(kmeans(x, k, iters, generator), "t (h w) -> t h w", h=h)
    up = F.interpolate(clusters[:, None].float(), size=size, mode="nearest")[:, 0]
    return up.long() + 1


def kmeans_reference(
    dataset: SequenceDataset,
    encoder: FrozenEncoder,
    rule: ResizeRule,
    k: int,
    batch_size: int = 32,
    seed: int = 0,
    space: FeatureSpace | None = None,
) -> DiscoveryTable:
    """Per-frame k-means of every sequence of an annotated split, scored like unsupervised evaluation.

    k-means ids are per frame, so only the frame-level scores (``FG-ARI-frame``, ``FG-ARI-early``,
    ``FG-ARI-late``, ``mBO-frame``) and the per-frame curve compare with a slot model's.

    Args:
        dataset: the annotated split.
        encoder: the frozen encoder of the model it is compared with.
        rule: the resize rule of that model's evaluation.
        k: clusters per frame (the model's slot count).
        batch_size: frames per encoder pass.
        seed: seeds the k-means++ draws.
        space: a feature store at ``rule`` to read the features from (and write them to).
    """
    table = DiscoveryTable()
    generator = torch.Generator().manual_seed(seed)
    for index in range(len(dataset)):
        seq = dataset[index]
        if seq.labels is None:
            raise ValueError(f"sequence `{seq.name}` has no annotations; the k-means reference needs them")
        truth = torch.where(seq.labels == VOID_LABEL, 0, seq.labels)
        features = torch.stack(list(frame_features(encoder, seq.frames, rule, batch_size, space,
                                                   dataset.frame_paths(seq.name), seq.name)))
        pred = kmeans_segments(features, k, (truth.shape[-2], truth.shape[-1]), generator=generator)
        table.add(seq.name, discovery_scores(truth, pred), fg_ari_per_frame(truth, pred))
    return table
