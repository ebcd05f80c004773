"""The compiled J/F kernel: bit-for-bit equal to the plain reference, the torch path and the OpenCV baseline;
its edge cases."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from dinosavi.metrics import compiled
from dinosavi.metrics.davis import _scores, evaluate_semisupervised
from dinosavi.metrics.matching import match_segments
from dinosavi.metrics.protocol import boundary_radius
from tests.metrics import reference

pytestmark = pytest.mark.skipif(not compiled.available(), reason="the compiled J/F kernel is not built")


def _boxes(rng: np.random.Generator, shape: tuple[int, int, int], k: int) -> np.ndarray:
    """Overlapping rectangles of ids 1..k, some cut by the image border."""
    T, H, W = shape
    out = np.zeros(shape, np.uint8)
    for obj in range(1, k + 1):
        for t in range(T):
            y, x = rng.integers(-5, H), rng.integers(-5, W)
            h, w = rng.integers(1, H // 2 + 2), rng.integers(1, W // 2 + 2)
            out[t, max(y, 0) : y + h, max(x, 0) : x + w] = obj
    return out


def _torch_scores(gt: np.ndarray, pred: np.ndarray, k: int, radius: int, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as m:
        m.setattr(compiled, "_jf", None)
        j, f = _scores(torch.from_numpy(gt), torch.from_numpy(pred), k, radius)
    return j.numpy(), f.numpy()


@pytest.mark.parametrize("seed", range(8))
def test_equals_torch_path_bit_for_bit(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random sizes (words cut anywhere), void and ids above K in gt, radii up to past one word (64)."""
    rng = np.random.default_rng(seed)
    for trial in range(12):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 60)), int(rng.integers(1, 140)))
        k = int(rng.integers(1, 6))
        gt, pred = _boxes(rng, shape, k), _boxes(rng, shape, k)
        gt[rng.random(shape) < 0.03] = 255
        gt[rng.random(shape) < 0.01] = k + 3
        radius = [0, 1, boundary_radius(shape[1], shape[2]), 40, 70][trial % 5]
        pairs = np.repeat(np.arange(1, k + 1, dtype=np.int32), 2).reshape(k, 2)
        j, f = compiled.pair_scores(gt, pred, pairs, k, k, radius)
        j_ref, f_ref = _torch_scores(gt, pred, k, radius, monkeypatch)
        np.testing.assert_array_equal(j, j_ref)
        np.testing.assert_array_equal(f, f_ref)


@pytest.mark.parametrize("seed", range(4))
def test_equals_plain_reference_on_random_masks(seed: int) -> None:
    """Every (gt id, pred id) pair, K != P, against the plain definitions; radii up to past one word (64)."""
    rng = np.random.default_rng(100 + seed)
    for trial in range(5):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 140)))
        k, p = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        gt, pred = _boxes(rng, shape, k), _boxes(rng, shape, p)
        gt[rng.random(shape) < 0.03] = 255
        pred[rng.random(shape) < 0.03] = p
        radius = [0, 1, boundary_radius(shape[1], shape[2]), 30, 70][trial]
        pairs = np.array([[a, b] for a in range(1, k + 1) for b in range(1, p + 1)], np.int32)
        j, f = compiled.pair_scores(gt, pred, pairs, k, p, radius)
        j_ref, f_ref = reference.pair_scores(gt, pred, pairs, radius)
        np.testing.assert_array_equal(j, j_ref)
        np.testing.assert_array_equal(f, f_ref)


@pytest.mark.parametrize("density", [0.001, 0.02])
def test_isolated_pixels_and_thin_lines_equal_torch_path(density: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Single pixels and 1-pixel lines anywhere in wide rows: every word offset holds a lone boundary."""
    rng = np.random.default_rng(int(density * 1000))
    shape = (3, 37, 301)
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    gt[rng.random(shape) < density] = 1
    pred[rng.random(shape) < density] = 1
    gt[:, 5, 17:250] = 2
    pred[:, 5:30, 96] = 2
    pred[1, :, 200 + np.arange(shape[1]) % 40] = 1
    for radius in (0, 3, 8):
        pairs = np.array([[1, 1], [2, 2]], np.int32)
        j, f = compiled.pair_scores(gt, pred, pairs, 2, 2, radius)
        j_ref, f_ref = _torch_scores(gt, pred, 2, radius, monkeypatch)
        np.testing.assert_array_equal(j, j_ref)
        np.testing.assert_array_equal(f, f_ref)


def test_real_masks_equal_baseline(davis_root: Path, davis_numpy: ModuleType) -> None:
    """DAVIS 480p annotations against shifted copies of themselves, as the toolkit scores them."""
    from dinosavi.data.png import read_palette_png

    paths = sorted((davis_root / "Annotations" / "480p" / "car-shadow").glob("*.png"))[:6]
    gt = np.stack([read_palette_png(p)[0] for p in paths])
    pred = np.roll(gt, (3, -5), axis=(1, 2))
    pred[2] = 0
    j, f = compiled.semisupervised(gt, pred, 1)
    j_ref, f_ref = davis_numpy.evaluate_semisupervised(gt, pred)
    np.testing.assert_array_equal(j, j_ref)
    np.testing.assert_array_equal(f, f_ref)


def test_all_pairs_and_empty_frames() -> None:
    gt = np.zeros((3, 20, 30), np.uint8)
    gt[:, 2:9, 3:12] = 1
    gt[:, 11:18, 14:27] = 2
    gt[1] = 0  # an empty frame in both maps
    pred = gt.copy()
    pred[pred == 2] = 3
    pairs = np.array([[k, q] for q in (1, 2, 3) for k in (1, 2)], np.int32)
    j, f = compiled.pair_scores(gt, pred, pairs, 2, 3, 2)
    assert j[:, 1].tolist() == [1.0] * 6 and f[:, 1].tolist() == [1.0] * 6  # both empty everywhere
    # frame 0: object 1 = proposal 1, object 2 = proposal 3, proposal 2 empty
    assert j[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert f[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_unsupervised_equals_match_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    gt, prop = _boxes(rng, (4, 40, 70), 3), _boxes(rng, (4, 40, 70), 6)
    j, f, ids = compiled.unsupervised(gt, prop, 3)
    monkeypatch.setattr(compiled, "_jf", None)
    ref = match_segments(gt, prop)
    np.testing.assert_array_equal(j, ref.j.numpy())
    np.testing.assert_array_equal(f, ref.f.numpy())
    assert ids.tolist() == ref.proposal_ids.tolist()


def test_semisupervised_equals_torch_function(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    gt, pred = _boxes(rng, (5, 33, 47), 4), _boxes(rng, (5, 33, 47), 4)
    gt[0, 0, 0] = 4
    j, f = compiled.semisupervised(gt, pred, 4)
    monkeypatch.setattr(compiled, "_jf", None)
    ref = evaluate_semisupervised(gt, pred)
    np.testing.assert_array_equal(j, ref.j.numpy())
    np.testing.assert_array_equal(f, ref.f.numpy())


def test_int64_ids_outside_the_range_are_background() -> None:
    gt = np.zeros((2, 8, 9), np.int64)
    gt[:, 2:5, 2:6] = 1
    gt[:, 6, :] = 300  # not an object: background, not id 300 % 256
    gt[:, 0, 0] = -1
    j, f = compiled.pair_scores(gt, (gt == 1).astype(np.uint8), np.array([[1, 1]]), 1, 1, 1)
    assert j.tolist() == [[1.0, 1.0]] and f.tolist() == [[1.0, 1.0]]


def test_bad_arguments_raise() -> None:
    z = np.zeros((2, 4, 5), np.uint8)
    with pytest.raises(ValueError, match="pair 0"):
        compiled.pair_scores(z, z, np.array([[2, 1]]), 1, 1, 1)
    with pytest.raises(ValueError, match="T, H, W"):
        compiled.pair_scores(z, z[:, :3], np.array([[1, 1]]), 1, 1, 1)
    with pytest.raises(ValueError, match="up to 255"):
        compiled.pair_scores(z, z, np.array([[1, 1]]), 300, 1, 1)
    with pytest.raises(ValueError, match="T >= 3"):
        compiled.semisupervised(z, z, 1)
