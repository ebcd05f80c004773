"""ScoreTable: global means and the checks of what is added."""

from __future__ import annotations

import numpy as np
import pytest

from dinosavi.metrics.results import ScoreTable


def _table() -> ScoreTable:
    table = ScoreTable()
    table.add("bear", np.array([[1.0, 0.8, 0.6, 0.4]]), np.array([[0.9, 0.9, 0.9, 0.9]]))
    table.add("dog", np.array([[0.5] * 4, [0.25] * 4]), np.array([[1.0] * 4, [0.0] * 4]))
    return table


def test_global_means() -> None:
    g = _table().global_means()
    j_mean = (0.7 + 0.5 + 0.25) / 3
    f_mean = (0.9 + 1.0 + 0.0) / 3
    assert g["J-Mean"] == pytest.approx(j_mean)
    assert g["F-Mean"] == pytest.approx(f_mean)
    assert g["J&F-Mean"] == pytest.approx((j_mean + f_mean) / 2)
    assert g["J-Recall"] == pytest.approx((0.75 + 0 + 0) / 3)
    # decay of bear J with 4 frames: bins [0..1] and [2..3] -> 0.9 - 0.5
    assert g["J-Decay"] == pytest.approx(0.4 / 3)


def test_duplicate_sequence_and_empty_table_raise() -> None:
    table = _table()
    with pytest.raises(ValueError, match="bear"):
        table.add("bear", np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="no sequence"):
        ScoreTable().global_means()
