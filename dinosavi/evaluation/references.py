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
from dinosavi.features.source import FeatureSource
from dinosavi.metrics.objects import discovery_scores, fg_ari_per_frame
from dinosavi.metrics.protocol import VOID_LABEL
from dinosavi.metrics.results import DiscoveryTable
from dinosavi.models.regions import kmeans

__all__ = ["kmeans_reference", "kmeans_segments"]


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


def kmeans_reference(dataset: SequenceDataset, source: FeatureSource, k: int, seed: int = 0) -> DiscoveryTable:
    """Per-frame k-means of every sequence of an annotated split, scored like unsupervised evaluation.

    k-means ids are per frame, so only the frame-level scores (``FG-ARI-frame``, ``FG-ARI-early``,
    ``FG-ARI-late``, ``mBO-frame``) and the per-frame curve compare with a slot model's.

    Args:
        dataset: the annotated split.
        source: the features the model it is compared with is evaluated on (its encoder and eval resolution).
        k: clusters per frame (the model's slot count).
        seed: seeds the k-means++ draws.
    """
    table = DiscoveryTable()
    generator = torch.Generator().manual_seed(seed)
    for index in range(len(dataset)):
        seq = dataset[index]
        if seq.labels is None:
            raise ValueError(f"sequence `{seq.name}` has no annotations; the k-means reference needs them")
        truth = torch.where(seq.labels == VOID_LABEL, 0, seq.labels)
        features = torch.stack(list(source.features(seq.frames, dataset.frame_paths(seq.name), seq.name)))
        pred = kmeans_segments(features, k, (truth.shape[-2], truth.shape[-1]), generator=generator)
        table.add(seq.name, discovery_scores(truth, pred), fg_ari_per_frame(truth, pred))
    return table
