"""The references that need no learning: k-means of frozen features."""

from __future__ import annotations

import torch

from dinosavi.evaluation.references import kmeans_segments
from dinosavi.models.regions import kmeans


def test_kmeans_finds_well_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = (centres.repeat_interleave(20, 0) + 0.1 * torch.randn(60, 2, generator=g))[None]  # (1, 60, 2)
    assign = kmeans(points, 3, generator=torch.Generator().manual_seed(1))[0]
    groups = [set(assign[i * 20:(i + 1) * 20].tolist()) for i in range(3)]
    assert all(len(group) == 1 for group in groups) and len(set.union(*groups)) == 3


def test_kmeans_segments_are_ids_one_to_k_at_pixel_size():
    features = torch.zeros(2, 4, 2, 2)
    features[:, 0, :, :1] = 5.0  # left column differs from the right
    ids = kmeans_segments(features, 2, (8, 8), generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, 8, 8) and set(ids.unique().tolist()) == {1, 2}
    assert (ids[:, :, :4] == ids[:, :1, :1]).all() and (ids[:, :, 4:] != ids[:, :1, :1]).all()
