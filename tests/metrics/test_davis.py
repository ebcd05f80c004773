"""DAVIS J/F: hand-computed cases, protocol rules, the plain reference, and parity with the toolkit's
per-frame NumPy + OpenCV baseline (only the parity tests need OpenCV: the ``davis_numpy`` fixture)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch
from scipy import ndimage

from dinosavi.metrics.davis import (
    _scores,
    boundary_f,
    boundary_radius,
    evaluate_semisupervised,
    jaccard,
    seg2bmap,
)
from tests.metrics import reference

pytestmark = pytest.mark.usefixtures("kernel")  # every test on the compiled and the torch path


def _one(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask[None])


def test_empty_masks_score_one() -> None:
    z = np.zeros((6, 7), bool)
    assert jaccard(_one(z), _one(z)).tolist() == [1.0]
    assert boundary_f(_one(z), _one(z)).tolist() == [1.0]


def test_one_empty_scores_zero() -> None:
    z = np.zeros((6, 7), bool)
    m = z.copy()
    m[2:4, 2:5] = True
    assert jaccard(_one(m), _one(z)).tolist() == [0.0]
    assert jaccard(_one(z), _one(m)).tolist() == [0.0]
    assert boundary_f(_one(m), _one(z)).tolist() == [0.0]
    assert boundary_f(_one(z), _one(m)).tolist() == [0.0]


def test_identical_masks_score_one() -> None:
    m = np.zeros((3, 20, 30), bool)
    m[:, 5:12, 4:20] = True
    assert jaccard(m, m).tolist() == [1.0] * 3
    assert boundary_f(m, m).tolist() == [1.0] * 3


def test_single_pixel() -> None:
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    pred = np.zeros((5, 5), bool)
    pred[2, 3] = True
    assert jaccard(_one(gt), _one(pred)).tolist() == [0.0]
    # boundary of a single pixel (2,2): itself, its west (2,1), north (1,2) and north-west (1,1) neighbours.
    b = seg2bmap(_one(gt))[0]
    assert sorted(map(tuple, b.nonzero().tolist())) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # radius 1: pred boundary {(1,2),(1,3),(2,2),(2,3)}; gt boundary {(1,1),(1,2),(2,1),(2,2)}
    # every pixel of either is within distance 1 of the other -> F = 1; radius 0 -> 2 of 4 match.
    assert boundary_f(_one(gt), _one(pred), bound_th=1).tolist() == [1.0]
    assert boundary_f(_one(gt), _one(pred), bound_th=0.0).tolist() == [0.5]


def test_shifted_square_hand_computed() -> None:
    gt = np.zeros((12, 12), bool)
    gt[2:6, 2:6] = True  # 4x4 square
    pred = np.zeros((12, 12), bool)
    pred[2:6, 4:8] = True  # shifted right by 2: overlap 4x2 = 8, union 24
    assert jaccard(_one(gt), _one(pred)).item() == pytest.approx(8 / 24, abs=0)
    # boundaries: 4x4 square at rows 2..5, cols 2..5 -> boundary = rows 1..5 x cols 1..5 minus interior
    # rows 2..4 x cols 2..4 = 25 - 9 = 16 pixels; pred the same shifted by 2 columns.
    # radius 1: a boundary pixel matches iff the other boundary has a pixel at it or 4-adjacent to it.
    gb = seg2bmap(_one(gt))[0].numpy()
    pb = seg2bmap(_one(pred))[0].numpy()
    assert gb.sum() == 16 and pb.sum() == 16
    near = lambda a, b: sum(  # noqa: E731
        any(b[y + dy, x + dx] for dy, dx in [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]) for y, x in zip(*a.nonzero())
    )
    p, r = near(pb, gb) / 16, near(gb, pb) / 16
    # gt ring rows 1..5 x cols 1..5, pred ring rows 1..5 x cols 3..7. gt pixels matched: top and
    # bottom rows at cols 2..5 (4 + 4) and the right column's ends (2,5), (4,5), whose north/south
    # neighbours (1,5), (5,5) are pred pixels -> 10 of 16; the same by symmetry for pred.
    assert (p, r) == (10 / 16, 10 / 16)
    assert boundary_f(_one(gt), _one(pred), bound_th=1).item() == pytest.approx(10 / 16, abs=1e-15)


def test_seg2bmap_tiny() -> None:
    seg = np.array(
        [
            [0, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 1, 1, 1],
        ],
        bool,
    )
    expected = np.array(
        [
            [1, 1, 1, 0],  # (0,0) differs SE, (0,1)(0,2) differ S, (0,3): last col compares S only (0 vs 0)
            [1, 0, 1, 1],  # (1,0) E; (1,1) same E,S,SE; (1,2) E; (1,3) last col: S differs
            [1, 0, 0, 0],  # last row: E only; (2,0) vs (2,1) differ; bottom-right always 0
        ],
        bool,
    )
    assert np.array_equal(seg2bmap(seg[None])[0].numpy(), expected)
    assert np.array_equal(reference.boundary_map(seg), expected)


def test_seg2bmap_equals_baseline(davis_numpy: ModuleType) -> None:
    seg = np.random.default_rng(0).random((9, 13)) < 0.5
    assert np.array_equal(seg2bmap(seg[None])[0].numpy(), davis_numpy.boundary_map(seg))


def test_void_excluded_from_j() -> None:
    gt = np.zeros((1, 4, 4), bool)
    gt[0, :2] = True
    pred = np.zeros((1, 4, 4), bool)
    pred[0, :3] = True
    void = np.zeros((1, 4, 4), bool)
    void[0, 2] = True
    assert jaccard(gt, pred).item() == pytest.approx(8 / 12, abs=0)
    assert jaccard(gt, pred, void).item() == 1.0


def _video(T: int = 5) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((T, 20, 30), np.uint8)
    pred = np.zeros_like(gt)
    for t in range(T):
        gt[t, 2:10, 2 + t : 10 + t] = 1
        gt[t, 12:18, 15:25] = 2
        pred[t, 3:10, 2 + t : 10 + t] = 1
        pred[t, 12:18, 14 + t : 24] = 2
    return gt, pred


def test_semisupervised_excludes_first_and_last() -> None:
    gt, pred = _video()
    scores = evaluate_semisupervised(gt, pred)
    assert scores.j.shape == (2, 3)
    assert scores.frame_ids.tolist() == [1, 2, 3]
    wrecked = pred.copy()
    wrecked[0] = 0
    wrecked[-1] = 0
    again = evaluate_semisupervised(gt, wrecked)
    assert torch.equal(scores.j, again.j) and torch.equal(scores.f, again.f)
    expected = jaccard(gt[1:-1] == 1, pred[1:-1] == 1)
    assert torch.equal(scores.j[0], expected)


def test_void_is_background_in_semisupervised() -> None:
    gt, pred = _video()
    gt_void = gt.copy()
    gt_void[:, 0:2, :] = 255
    a = evaluate_semisupervised(gt, pred)
    b = evaluate_semisupervised(gt_void, pred)
    assert torch.equal(a.j, b.j) and torch.equal(a.f, b.f)


def test_id_above_object_count_raises() -> None:
    gt, pred = _video()
    pred[2, 0, 0] = 3
    with pytest.raises(ValueError, match=r"0\.\.2"):
        evaluate_semisupervised(gt, pred)


def test_missing_id_scores_zero() -> None:
    gt, pred = _video()
    pred[pred == 2] = 0
    scores = evaluate_semisupervised(gt, pred)
    assert scores.j[1].tolist() == [0.0] * 3
    assert scores.f[1].tolist() == [0.0] * 3
    assert bool((scores.j[0] > 0).all())


def test_num_objects_from_first_frame() -> None:
    gt, pred = _video()
    gt[0][gt[0] == 2] = 0  # object 2 absent from the first frame -> only 1 object scored
    pred[pred == 2] = 0
    assert evaluate_semisupervised(gt, pred).j.shape == (1, 3)


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int], k: int) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for obj in range(1, k + 1):
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 5, 5))
        out[noise > np.quantile(noise, 0.8)] = obj
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_baseline(seed: int, davis_numpy: ModuleType) -> None:
    rng = np.random.default_rng(seed)
    gt = _blobs(rng, (5, 120, 200), 2)
    pred = _blobs(rng, (5, 120, 200), 2)
    gt[2, 10:30, 40:90] = 255
    ours = evaluate_semisupervised(torch.from_numpy(gt), torch.from_numpy(pred))
    j_ref, f_ref = davis_numpy.evaluate_semisupervised(gt, pred)
    np.testing.assert_allclose(ours.j.numpy(), j_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.f.numpy(), f_ref, rtol=0, atol=1e-9)
    void = gt == 2
    for th in (0.008, 2, 0.05):
        f = boundary_f(gt == 1, pred == 1, void, bound_th=th).numpy()
        j = jaccard(gt == 1, pred == 1, void).numpy()
        f_ref = [davis_numpy.frame_boundary_f(gt[t] == 1, pred[t] == 1, void[t], th) for t in range(5)]
        j_ref = [davis_numpy.frame_jaccard(gt[t] == 1, pred[t] == 1, void[t]) for t in range(5)]
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(j, j_ref, rtol=0, atol=1e-9)


def test_frame_chunks_and_wide_ids_match_baseline(monkeypatch: pytest.MonkeyPatch, davis_numpy: ModuleType) -> None:
    """Tile grids split over frame chunks, int64 inputs, and K >= 16 (int32 joint map) give the same values."""
    import dinosavi.metrics.davis as davis

    rng = np.random.default_rng(5)
    gt = _blobs(rng, (6, 50, 70), 17)
    pred = _blobs(rng, (6, 50, 70), 17)
    gt[0, 0, 0] = 17  # all 17 objects annotated in the first frame
    j_ref, f_ref = davis_numpy.evaluate_semisupervised(gt, pred)
    whole = evaluate_semisupervised(torch.from_numpy(gt).long(), torch.from_numpy(pred).long())
    monkeypatch.setattr(davis, "_PLANE_BYTES", 1)  # one frame per chunk
    chunked = evaluate_semisupervised(gt, pred)
    for scores in (whole, chunked):
        np.testing.assert_allclose(scores.j.numpy(), j_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(scores.f.numpy(), f_ref, rtol=0, atol=1e-12)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="gt"):
        jaccard(np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), bool))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(3)
    gt = torch.from_numpy(_blobs(rng, (4, 60, 80), 2))
    pred = torch.from_numpy(_blobs(rng, (4, 60, 80), 2))
    cpu = evaluate_semisupervised(gt, pred)
    gpu = evaluate_semisupervised(gt.cuda(), pred.cuda())
    assert torch.equal(cpu.j, gpu.j.cpu()) and torch.equal(cpu.f, gpu.f.cpu())


def _ref(davis_numpy: ModuleType, gt: np.ndarray, pred: np.ndarray, th: float) -> tuple[np.ndarray, np.ndarray]:
    j = [davis_numpy.frame_jaccard(gt[t], pred[t]) for t in range(len(gt))]
    f = [davis_numpy.frame_boundary_f(gt[t], pred[t], bound_th=th) for t in range(len(gt))]
    return np.array(j), np.array(f)


@pytest.mark.parametrize("shape", [(3, 1, 1), (3, 1, 9), (3, 9, 1), (4, 13, 17), (2, 31, 65), (2, 40, 130)])
@pytest.mark.parametrize("th", [0.0, 1, 3, 0.008, 0.5, 200])
def test_parity_odd_sizes_borders_and_radii(shape: tuple[int, int, int], th: float, davis_numpy: ModuleType) -> None:
    """Odd sizes, masks touching every border, word-boundary widths, radius 0 and larger than the image."""
    rng = np.random.default_rng(sum(shape))
    gt = rng.random(shape) < 0.4
    pred = rng.random(shape) < 0.4
    gt[0], pred[0, :, -1] = True, True  # full frame / right border
    pred[-1] = False  # empty prediction
    j, f = jaccard(gt, pred).numpy(), boundary_f(gt, pred, bound_th=th).numpy()
    j_ref, f_ref = _ref(davis_numpy, gt, pred, th)
    np.testing.assert_array_equal(j, j_ref)
    np.testing.assert_array_equal(f, f_ref)


def test_all_empty_and_one_empty_sequences(davis_numpy: ModuleType) -> None:
    z = np.zeros((4, 11, 13), np.uint8)
    gt = z.copy()
    gt[:, 3:6, 4:9] = 1
    for g, p in ((z, z), (gt, z), (z, gt)):
        j_ref, f_ref = _ref(davis_numpy, g, p, 0.008)
        np.testing.assert_array_equal(boundary_f(g, p).numpy(), f_ref)
        np.testing.assert_array_equal(jaccard(g, p).numpy(), j_ref)


@pytest.mark.parametrize("seed", [2, 3])
def test_many_objects_at_borders_match_baseline(seed: int, davis_numpy: ModuleType) -> None:
    """12 objects (narrow joint ids), objects cut by every image border, void and ids above K in gt."""
    rng = np.random.default_rng(seed)
    gt = _blobs(rng, (5, 47, 93), 12)
    pred = _blobs(rng, (5, 47, 93), 12)
    gt[0, 0, 0] = 12
    gt[:, :3, :] = 7
    pred[:, :, -2:] = 5
    gt[2, 20:25, 30:40] = 255
    j_ref, f_ref = davis_numpy.evaluate_semisupervised(gt, pred)
    ours = evaluate_semisupervised(gt, pred)
    np.testing.assert_array_equal(ours.j.numpy(), j_ref)
    np.testing.assert_array_equal(ours.f.numpy(), f_ref)


@pytest.mark.parametrize("seed", range(4))
def test_equals_plain_reference_on_random_masks(seed: int) -> None:
    """Both J/F paths (bit-packed torch, compiled) equal the plain definitions bit for bit: random sizes,
    1 to 17 objects (narrow and wide joint ids), void and ids above K in gt, radii 0 to past the guard bits."""
    rng = np.random.default_rng(seed)
    for trial in range(6):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 90)))
        k = [1, 2, 5, 17][(seed + trial) % 4]
        gt, pred = reference.random_id_maps(rng, shape, k), reference.random_id_maps(rng, shape, k)
        gt[rng.random(shape) < 0.03] = 255
        radius = [0, 1, 3, boundary_radius(shape[1], shape[2]), 20, 40][trial]
        j, f = _scores(torch.from_numpy(gt), torch.from_numpy(pred), k, radius)
        pairs = np.repeat(np.arange(1, k + 1), 2).reshape(k, 2)
        j_ref, f_ref = reference.pair_scores(gt, pred, pairs, radius)
        np.testing.assert_array_equal(j.numpy(), j_ref)
        np.testing.assert_array_equal(f.numpy(), f_ref)


@pytest.mark.parametrize("radius", [0, 1, 3, 8])
def test_plain_reference_equals_baseline(radius: int, davis_numpy: ModuleType) -> None:
    """The plain reference states the toolkit's definitions: the same values as its OpenCV path."""
    rng = np.random.default_rng(radius)
    for _ in range(20):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 70)))
        gt, pred = rng.random(shape) < rng.random(), rng.random(shape) < rng.random()
        assert reference.frame_jaccard(gt, pred) == davis_numpy.frame_jaccard(gt, pred)
        assert reference.frame_boundary_f(gt, pred, radius) == davis_numpy.frame_boundary_f(
            gt, pred, bound_th=radius if radius else 0.0
        )
        assert np.array_equal(reference.boundary_map(gt), davis_numpy.boundary_map(gt))
