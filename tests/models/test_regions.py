import pytest
import torch

from dinosavi.models.regions import carry_regions, kmeans, kmeans_regions


def _clusters(n: int = 30) -> torch.Tensor:
    """Three well-separated 2-d clusters of ``n`` points each, interleaved, as one set ``(1, 3n, 2)``."""
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres.repeat(n, 1) + 0.1 * torch.randn(3 * n, 2)
    return points[None]


def test_farthest_point_kmeans_separates_clusters_without_a_random_draw():
    points = _clusters()
    state = torch.random.get_rng_state()
    assign = kmeans(points, 3)[0]
    assert torch.equal(torch.random.get_rng_state(), state)  # deterministic: no draw
    truth = torch.arange(points.shape[1]) % 3
    for c in range(3):  # each true cluster is one k-means cluster, and the three differ
        assert assign[truth == c].unique().numel() == 1
    assert assign.unique().numel() == 3
    assert torch.equal(kmeans(points, 3), kmeans(points, 3))


def test_kmeans_plusplus_with_a_generator_separates_clusters_too():
    points = _clusters()
    assign = kmeans(points, 3, generator=torch.Generator().manual_seed(0))[0]
    assert assign.unique().numel() == 3


def test_kmeans_leaves_invalid_points_out():
    points = _clusters(10)
    valid = torch.zeros(1, 30, dtype=torch.bool)
    valid[0, :20] = True  # clusters 0 and 1 (points alternate 0, 1, 2) and some of cluster 2
    assign = kmeans(points, 2, valid=valid)
    assert (assign[~valid] == -1).all() and (assign[valid] >= 0).all()
    with pytest.raises(ValueError, match="farthest-point"):
        kmeans(points, 2, generator=torch.Generator(), valid=valid)
    with pytest.raises(ValueError, match="1 <= k <= 30"):
        kmeans(points, 31)


def test_kmeans_regions_are_disjoint_masks_of_the_valid_patches():
    features = torch.randn(2, 40, 8)
    valid = torch.rand(2, 40) > 0.3
    regions = kmeans_regions(features, 4, valid=valid)
    assert regions.shape == (2, 4, 40) and regions.dtype == torch.bool
    assert torch.equal(regions.sum(1), valid.long())  # every valid patch in exactly one region, none else


def test_carry_regions_follows_patches_that_move():
    # frame 1 is frame 0 with its patches shifted by one: each region must follow its patches
    features0 = torch.eye(6)[None]  # (1, N=6, D=6): every patch distinct
    features1 = features0.roll(1, dims=1)  # patch n of frame 1 is patch n-1 of frame 0
    regions = torch.zeros(1, 2, 6)
    regions[0, 0, :3] = 1
    regions[0, 1, 3:] = 1
    carried = carry_regions(regions, torch.stack([features0, features1], dim=1), topk=1, temperature=0.01)
    assert carried.shape == (1, 2, 2, 6)
    torch.testing.assert_close(carried[:, 0], regions)
    torch.testing.assert_close(carried[0, 1], regions[0].roll(1, dims=1))
