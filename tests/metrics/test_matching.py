"""Unsupervised matching: permuted proposals, unmatched objects, parity with the OpenCV baseline (``davis_numpy``)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch

from dinosavi.metrics.davis import boundary_f, jaccard
from dinosavi.metrics.matching import match_segments

pytestmark = pytest.mark.usefixtures("kernel")  # every test on the compiled and the torch path


def _video() -> np.ndarray:
    gt = np.zeros((4, 20, 30), np.uint8)
    gt[:, 2:8, 2:10] = 1
    gt[:, 10:18, 12:26] = 2
    return gt


def test_permuted_proposals_are_matched() -> None:
    gt = _video()
    prop = np.zeros_like(gt)
    prop[gt == 1] = 5
    prop[gt == 2] = 3
    prop[:, 0, 0] = 9  # a spurious proposal
    out = match_segments(gt, prop)
    assert out.proposal_ids.tolist() == [5, 3]
    assert out.j[1].tolist() == [1.0] * 4
    expected = jaccard(gt == 1, prop == 5)
    assert torch.equal(out.j[0], expected)
    assert torch.equal(out.f[0], boundary_f(gt == 1, prop == 5))


def test_fewer_proposals_than_objects() -> None:
    gt = _video()
    prop = np.where(gt == 2, 1, 0).astype(np.uint8)
    out = match_segments(gt, prop)
    assert out.proposal_ids.tolist() == [0, 1]
    assert out.j[0].tolist() == [0.0] * 4 and out.f[0].tolist() == [0.0] * 4


def test_too_many_proposals_raises() -> None:
    gt = _video()
    prop = np.zeros_like(gt)
    prop[0, 0, 0] = 21
    with pytest.raises(ValueError, match="max_proposals"):
        match_segments(gt, prop)


def test_parity_with_baseline(davis_numpy: ModuleType) -> None:
    rng = np.random.default_rng(0)
    from scipy import ndimage

    def blobs(k: int) -> np.ndarray:
        out = np.zeros((4, 60, 90), np.uint8)
        for obj in range(1, k + 1):
            noise = ndimage.gaussian_filter(rng.standard_normal(out.shape), (0, 4, 4))
            out[noise > np.quantile(noise, 0.8)] = obj
        return out

    gt, prop = blobs(2), blobs(3)
    out = match_segments(gt, prop)
    j_ref, f_ref, ids_ref = davis_numpy.evaluate_unsupervised(gt, prop)
    np.testing.assert_allclose(out.j.numpy(), j_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.f.numpy(), f_ref, rtol=0, atol=1e-9)
    assert out.proposal_ids.tolist() == ids_ref.tolist()


def test_parity_with_baseline_many_proposals_at_borders(davis_numpy: ModuleType) -> None:
    """17 proposals (wide joint ids), objects touching the image border, a missing proposal id."""
    rng = np.random.default_rng(4)
    gt = np.zeros((3, 33, 71), np.uint8)
    gt[:, 0:12, 0:20] = 1
    gt[:, 20:33, 50:71] = 2
    gt[:, 14:19, 25:40] = 3
    prop = rng.integers(0, 18, size=gt.shape).astype(np.uint8)
    prop[:, 0:10, 0:18] = 4
    prop[prop == 9] = 0
    out = match_segments(gt, prop)
    j_ref, f_ref, ids_ref = davis_numpy.evaluate_unsupervised(gt, prop)
    np.testing.assert_array_equal(out.j.numpy(), j_ref)
    np.testing.assert_array_equal(out.f.numpy(), f_ref)
    assert out.proposal_ids.tolist() == ids_ref.tolist()
