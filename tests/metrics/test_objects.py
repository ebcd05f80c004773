"""FG-ARI, mBO and Hungarian mIoU on hand-made partitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinosavi.metrics.objects import fg_ari, mean_best_overlap, miou


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
