"""The joint (ground truth, prediction) map: the crop box and the confusion counts and boundary planes of
:func:`~dinosavi.metrics.joint.analyse`, by hand and against the plain reference (:mod:`tests.metrics.reference`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinosavi.metrics.joint import analyse, crop
from tests.metrics import reference


def test_crop_box_hand_computed() -> None:
    gt = torch.zeros(2, 10, 12, dtype=torch.uint8)
    gt[0, 3:5, 5:7] = 1
    pred = torch.zeros_like(gt)
    pred[1, 2, 8] = 1
    # objects span rows 2..4 and columns 5..8 over both frames: one more row/column up-left, one down-right
    out = crop(gt, pred, 1)
    assert out is not None
    assert torch.equal(out.gt, gt[:, 1:6, 4:10]) and torch.equal(out.pred, pred[:, 1:6, 4:10])
    assert (out.right, out.bottom, out.touches) == (False, False, False)


def test_crop_at_the_borders_and_ids_outside_the_range() -> None:
    gt = torch.zeros(1, 6, 7, dtype=torch.int64)
    gt[0, 4:, 5:] = 1
    gt[0, 0, 0] = 255  # void: background, but it widens the box
    gt[0, 2, 3] = 3  # above num_gt: background
    gt[0, 3, 3] = -1
    out = crop(gt, torch.zeros_like(gt), 2)
    assert out is not None
    assert out.gt.shape == (1, 6, 7) and (out.right, out.bottom, out.touches) == (True, True, True)
    assert torch.equal(out.gt, torch.where(gt == 1, 1, 0))
    top = crop(torch.where(gt == 1, 1, 0)[:, :3], torch.zeros(1, 3, 7, dtype=torch.int64), 2)
    assert top is None  # rows 0..2 hold no object
    one = torch.zeros(1, 6, 7, dtype=torch.int64)
    one[0, 1, 6] = 1
    out = crop(one, one, 1)
    assert out is not None and out.gt.shape == (1, 3, 2) and (out.right, out.bottom, out.touches) == (True, False, True)


def test_crop_of_empty_maps_is_none() -> None:
    z = torch.zeros(3, 5, 5, dtype=torch.uint8)
    assert crop(z, z, 2) is None


def test_analyse_hand_computed() -> None:
    """A 2x2 ground-truth square and a prediction covering its right column and one more pixel."""
    gt = torch.zeros(1, 8, 8, dtype=torch.uint8)
    gt[0, 2:4, 2:4] = 1
    pred = torch.zeros_like(gt)
    pred[0, 2:4, 3] = 1
    pred[0, 2, 4] = 1
    joint = crop(gt, pred, 1)
    assert joint is not None and joint.gt.shape == (1, 4, 5)  # rows 1..4, columns 1..5
    counts = analyse(joint, 1, 1, radius=1)
    confusion = counts.confusion[0]
    assert confusion[1].tolist() == [2.0, 2.0]  # gt pixels: 2 outside the prediction, 2 inside
    assert confusion[0, 1].item() == 1.0  # the predicted pixel outside the square
    # a pixel is on the boundary when its E, S or SE neighbour differs. gt: rows 1..3 x columns 1..3 but
    # the square's top-left (2, 2), whose three neighbours are the square -> 8 pixels. The prediction:
    # rows 1..3 x columns 2..4 but (3, 4), whose neighbours (3, 5), (4, 4), (4, 5) are background like it
    # -> 8 pixels ((2, 3) counts: its SE neighbour (3, 4) is background).
    assert counts.n_gt.tolist() == [[8]] and counts.n_pred.tolist() == [[8]]
    expected = np.zeros((8, 8), bool)
    expected[1:4, 1:4] = True
    expected[2, 2] = False
    assert np.array_equal(reference.unpack_planes(counts.gt_planes[0].numpy(), 5, 1)[0], expected[1:5, 1:6])
    expected = np.zeros((8, 8), bool)
    expected[1:4, 2:5] = True
    expected[3, 4] = False
    assert np.array_equal(reference.unpack_planes(counts.pred_planes[0].numpy(), 5, 1)[0], expected[1:5, 1:6])


def _box(gt: np.ndarray, pred: np.ndarray) -> tuple[slice, slice]:
    """The crop's box as its docstring states it: the non-zero ids, one more pixel on every side."""
    fg = ((gt != 0) | (pred != 0)).any(0)
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    H, W = fg.shape
    return slice(max(rows[0] - 1, 0), min(rows[-1] + 2, H)), slice(max(cols[0] - 1, 0), min(cols[-1] + 2, W))


@pytest.mark.parametrize(("num_gt", "num_pred"), [(1, 1), (3, 5), (17, 4), (2, 20)])  # 8 or 2 pixels per word
@pytest.mark.parametrize("radius", [0, 8, 30])
def test_analyse_equals_reference(num_gt: int, num_pred: int, radius: int) -> None:
    """Confusion counts and every object's boundary plane, on random maps with void and ids above K in gt."""
    rng = np.random.default_rng(num_gt * 100 + num_pred + radius)
    T, H, W = 3, 21, 45
    maps = {"noise": 0.02, "lowest_noise_id": 1, "dtype": np.int64}
    gt = reference.random_id_maps(rng, (T, H, W), num_gt, **maps)
    pred = reference.random_id_maps(rng, (T, H, W), num_pred, **maps)
    gt[rng.random((T, H, W)) < 0.02] = 255
    gt[0, 5, 7] = num_gt + 1
    joint = crop(torch.from_numpy(gt), torch.from_numpy(pred), num_gt)
    assert joint is not None
    counts = analyse(joint, num_gt, num_pred, radius)
    g = np.where(gt > num_gt, 0, gt)
    rows, cols = _box(gt, pred)
    Hc, Wc = rows.stop - rows.start, cols.stop - cols.start
    assert joint.gt.shape == (T, Hc, Wc)
    expected = np.zeros((T, num_gt + 1, num_pred + 1))
    for t in range(T):
        np.add.at(expected[t], (g[t].ravel(), pred[t].ravel()), 1)
    confusion = counts.confusion.numpy()
    assert confusion.shape == (T, num_gt + 1, num_pred + 1)
    confusion[:, 0, 0] = expected[:, 0, 0] = 0  # not a count: the pads and the runs' sums end there
    np.testing.assert_array_equal(confusion, expected)
    for ids, planes, n_px, count in ((g, counts.gt_planes, counts.n_gt, num_gt),
                                     (pred, counts.pred_planes, counts.n_pred, num_pred)):
        assert planes.shape[:3] == (count, T, Hc) and n_px.shape == (count, T)
        unpacked = reference.unpack_planes(planes.flatten(0, 1).numpy(), Wc, radius).reshape(count, T, Hc, Wc)
        for k in range(1, count + 1):
            for t in range(T):
                full = reference.boundary_map(ids[t] == k)
                assert np.array_equal(unpacked[k - 1, t], full[rows, cols]), (k, t)
                assert n_px[k - 1, t] == full.sum(), (k, t)  # no boundary pixel outside the box
