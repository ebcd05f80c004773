"""ScoreTable: global means, official CSV layout and format, JSON, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dinosavi.metrics.results import GLOBAL_COLUMNS, ScoreTable, format_table


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


def test_write_official_csvs_and_json(tmp_path: Path) -> None:
    paths = _table().write(tmp_path, "val")
    assert [p.name for p in paths] == ["global_results-val.csv", "per-sequence_results-val.csv", "metrics-val.json"]
    lines = paths[0].read_text().splitlines()
    assert lines[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert lines[1] == "0.558,0.483,0.250,0.133,0.633,0.667,0.000"
    seq = paths[1].read_text().splitlines()
    assert seq == ["Sequence,J-Mean,F-Mean", "bear_1,0.700,0.900", "dog_1,0.500,1.000", "dog_2,0.250,0.000"]
    data = json.loads(paths[2].read_text())
    assert set(data["global"]) == set(GLOBAL_COLUMNS)
    assert data["per_object"]["bear_1"]["J-Mean"] == pytest.approx(0.7, abs=1e-15)
    assert not list(tmp_path.glob("*.tmp"))


def test_duplicate_sequence_and_empty_table_raise() -> None:
    table = _table()
    with pytest.raises(ValueError, match="bear"):
        table.add("bear", np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="no sequence"):
        ScoreTable().global_means()


def test_format_table() -> None:
    text = format_table(_table())
    assert "J&F-Mean" in text and "dog_2" in text and "0.558" in text
