"""The DAVIS protocol without tensors: the boundary tolerance, the per-object statistics (mean, recall, decay),
the Hungarian assignment of proposals, and that none of it imports torch."""

from __future__ import annotations

import subprocess
import sys
import warnings
from types import ModuleType

import numpy as np
import pytest

from dinosavi.metrics.protocol import assign_proposals, boundary_radius, db_statistics
from tests.conftest import REPO_ROOT


def test_boundary_radius() -> None:
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(480, 854, 3) == 3
    with pytest.raises(ValueError, match="integer"):
        boundary_radius(10, 10, 1.5)


@pytest.mark.parametrize(
    ("n", "first", "last"),
    [(10, [0, 1, 2], [7, 8, 9]), (300, list(range(76)), list(range(224, 300)))],
)
def test_decay_bins(n: int, first: list[int], last: list[int]) -> None:
    x = np.arange(n, dtype=np.float64)
    mean, recall, decay = db_statistics(x)
    assert mean == pytest.approx(x.mean())
    assert recall == pytest.approx((x > 0.5).mean())
    assert decay == pytest.approx(x[first].mean() - x[last].mean())


def test_decay_bins_equal_baseline(davis_numpy: ModuleType) -> None:
    # T=300 would wrap with the toolkit's uint8 bin ids (ids[4] = 299 -> 43); here and in the baseline it does not.
    for n in (10, 300):
        x = np.arange(n, dtype=np.float64)
        assert davis_numpy.db_statistics(x) == pytest.approx(db_statistics(x))


def test_db_statistics_nan() -> None:
    mean, recall, _ = db_statistics(np.array([1.0, np.nan, 0.0, 1.0]))
    assert mean == pytest.approx(2 / 3)
    assert recall == pytest.approx(0.5)


def test_boundary_radius_hand_computed_and_errors() -> None:
    assert boundary_radius(100, 100, 0.01) == 2  # ceil(0.01 * 141.4)
    assert boundary_radius(480, 854, 0) == 0 and boundary_radius(480, 854, 1.0) == 1
    with pytest.raises(ValueError, match=r"must be an integer, got 2\.5"):
        boundary_radius(10, 10, 2.5)
    with pytest.raises(ValueError, match=r"bound_th must be >= 0, got -0\.1"):
        boundary_radius(10, 10, -0.1)


def test_db_statistics_of_no_frames_and_of_nan_frames() -> None:
    assert all(np.isnan(v) for v in db_statistics(np.array([])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN sequence warns nothing
        mean, recall, decay = db_statistics(np.full(4, np.nan))
    assert np.isnan(mean) and recall == 0.0 and np.isnan(decay)


def test_db_statistics_takes_a_list_and_any_shape() -> None:
    """Five frames: bins 0..1, 1..2, 2..3, 3..4 (ids 0, 1, 2, 3, 4); decay = mean(x[0:2]) - mean(x[3:5])."""
    x = [1.0, 0.8, 0.6, 0.4, 0.2]
    mean, recall, decay = db_statistics(x)
    assert mean == pytest.approx(0.6) and recall == pytest.approx(0.6)
    assert decay == pytest.approx(0.9 - 0.3)
    assert db_statistics(np.array(x).reshape(5, 1)) == (mean, recall, decay)


def test_assign_proposals_maximises_the_mean_of_j_and_f() -> None:
    """Object 0 is best matched by proposal 1, object 1 by the padding proposal 2 (reported as id 0)."""
    j_all = np.array([[[0.1, 0.1], [0.2, 0.2]],
                      [[0.9, 0.7], [0.3, 0.3]],
                      [[0.0, 0.0], [0.5, 0.5]]])  # (P=3, K=2, T=2)
    f_all = j_all / 2
    j, f, ids = assign_proposals(j_all, f_all, num_proposals=2)
    assert ids.tolist() == [2, 0]
    np.testing.assert_array_equal(j, [[0.9, 0.7], [0.5, 0.5]])
    np.testing.assert_array_equal(f, [[0.45, 0.35], [0.25, 0.25]])
    _, _, all_real = assign_proposals(j_all, f_all, num_proposals=3)
    assert all_real.tolist() == [2, 3]


def test_protocol_imports_neither_torch_nor_scipy_until_asked() -> None:
    code = ("import sys, dinosavi.metrics.protocol as p; p.db_statistics([0.5]); "
            "assert 'torch' not in sys.modules and 'scipy' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
