"""FG-ARI, mBO and Hungarian mIoU on hand-made partitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinosavi.metrics.objects import DISCOVERY_METRICS, discovery_scores, fg_ari, mean_best_overlap, miou


def test_fg_ari_permutation_invariant_and_ignores_background() -> None:
    true = torch.tensor([[0, 0, 1, 1, 2, 2]])
    pred = torch.tensor([[5, 6, 3, 3, 4, 4]])  # labels permuted, background pixels split differently
    assert fg_ari(true, pred).tolist() == [1.0]
    assert fg_ari(true, pred, ignore_background=False).item() < 1.0


def test_fg_ari_hand_computed() -> None:
    # foreground a=[1,1,2,2], b=[1,2,2,2]: contingency [[1,1],[0,2]], sum C(n_ij,2) = 1,
    # sum C(a,2) = 2, sum C(b,2) = 3, C(4,2) = 6 -> expected 1, max 2.5 -> ARI = 0 / 1.5 = 0.
    true = torch.tensor([[1, 1, 2, 2]])
    pred = torch.tensor([[1, 2, 2, 2]])
    assert fg_ari(true, pred).item() == pytest.approx(0.0, abs=1e-12)
    # a=[1,1,1,2,2,2], b=[1,1,2,2,3,3]: contingency [[2,1,0],[0,1,2]], sum C(n_ij,2) = 2,
    # sum C(a,2) = 6, sum C(b,2) = 3, C(6,2) = 15 -> expected 1.2, max 4.5 -> (2 - 1.2) / 3.3
    true = torch.tensor([[1, 1, 1, 2, 2, 2]])
    pred = torch.tensor([[1, 1, 2, 2, 3, 3]])
    assert fg_ari(true, pred).item() == pytest.approx(0.8 / 3.3)


def test_fg_ari_degenerate_cases() -> None:
    assert fg_ari(torch.zeros(1, 5, dtype=torch.long), torch.arange(5)[None]).tolist() == [1.0]
    assert fg_ari(torch.ones(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.long)).tolist() == [1.0]


def test_fg_ari_batched() -> None:
    true = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2]])
    pred = torch.tensor([[3, 3, 4, 4], [1, 2, 2, 2]])
    assert fg_ari(true, pred).tolist() == pytest.approx([1.0, 0.0], abs=1e-12)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((2, 4, 4), np.int64)
    true[:, :2, :2] = 1
    true[:, 2:, 2:] = 2
    pred = np.zeros_like(true)
    pred[:, :2, :] = 7  # covers object 1 (4 px) plus 4 background px per frame -> IoU 0.5
    pred[0, 2:, 2:] = 8  # object 2 exact in frame 0 only
    return true, pred


def test_mean_best_overlap() -> None:
    true, pred = _pair()
    # video level: obj1 IoU 0.5; obj2 best is segment 8: 4 / 8 = 0.5 -> 0.5
    assert mean_best_overlap(true, pred, video_level=True) == pytest.approx(0.5)
    # frame level: frame 0 -> (0.5 + 1) / 2; frame 1 -> obj2 best is pred id 0 (rows 2..3, 8 px): 4/8
    assert mean_best_overlap(true, pred, video_level=False) == pytest.approx((0.75 + 0.5) / 2)


def test_miou_hungarian() -> None:
    true, pred = _pair()
    # one-to-one: obj1 <-> 7 (0.5), obj2 <-> 8 (0.5)
    assert miou(true, pred) == pytest.approx(0.5)
    single = np.where(pred == 8, 7, pred)
    # only segments 0 and 7 remain: the better of the two one-to-one assignments, by definition
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    best = max(
        iou(true == 1, single == 7) + iou(true == 2, single == 0),
        iou(true == 1, single == 0) + iou(true == 2, single == 7),
    )
    assert miou(true, single) == pytest.approx(best / 2)


def _fg_ari_dense(true: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Reference: contingency tables from one-hot matrices (the OCL/SAVi formulation)."""
    weight = (true != 0).double()[..., None]
    t_oh = torch.nn.functional.one_hot(torch.unique(true, return_inverse=True)[1]).double() * weight
    p_oh = torch.nn.functional.one_hot(torch.unique(pred, return_inverse=True)[1]).double() * weight
    n_ij = torch.einsum("bnc,bnd->bcd", t_oh, p_oh)
    a, b = n_ij.sum(2), n_ij.sum(1)
    n = a.sum(1)
    rindex = (n_ij * (n_ij - 1)).sum((1, 2))
    a_pairs, b_pairs = (a * (a - 1)).sum(1), (b * (b - 1)).sum(1)
    expected = a_pairs * b_pairs / (n * (n - 1)).clamp(min=1)
    denom = (a_pairs + b_pairs) / 2 - expected
    return torch.where(denom == 0, torch.ones_like(denom), (rindex - expected) / torch.where(denom == 0, 1, denom))


def test_fg_ari_equals_the_one_hot_formulation() -> None:
    g = torch.Generator().manual_seed(0)
    true = torch.randint(0, 4, (6, 500), generator=g)
    pred = torch.where(torch.rand(6, 500, generator=g) < 0.7, true * 3 + 1, torch.randint(0, 9, (6, 500), generator=g))
    assert torch.allclose(fg_ari(true, pred), _fg_ari_dense(true, pred), atol=1e-12)


def test_discovery_scores() -> None:
    true, pred = _pair()
    scores = discovery_scores(true, pred)
    assert list(scores) == list(DISCOVERY_METRICS)
    assert scores["mBO"] == pytest.approx(mean_best_overlap(true, pred))
    assert scores["mBO-frame"] == pytest.approx(mean_best_overlap(true, pred, video_level=False))
    assert scores["mIoU"] == pytest.approx(miou(true, pred))
    assert scores["FG-ARI"] == pytest.approx(fg_ari(true.reshape(1, -1), pred.reshape(1, -1)).item())
    exact = discovery_scores(true, true * 5)
    assert exact["FG-ARI"] == exact["FG-ARI-frame"] == exact["mBO"] == exact["mIoU"] == 1.0
