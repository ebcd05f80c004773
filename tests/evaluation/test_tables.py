"""The files of a scored evaluation: official CSV layout and format, JSON, atomic writes; the text table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dinosavi.evaluation.tables import format_table, write_discovery_files, write_score_files
from dinosavi.metrics.results import GLOBAL_COLUMNS, DiscoveryTable
from tests.metrics.test_results import _table


def test_write_official_csvs_and_json(tmp_path: Path) -> None:
    paths = write_score_files(_table(), tmp_path, "val")
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


def test_discovery_files(tmp_path: Path) -> None:
    import torch

    table = DiscoveryTable()
    table.add("bear", {"FG-ARI": 0.5, "FG-ARI-frame": 0.6, "FG-ARI-early": 0.7, "FG-ARI-late": 0.5, "mBO": 0.25,
                       "mBO-frame": 0.3, "mIoU": 0.2}, torch.tensor([0.5, 0.7]))
    csv, js = write_discovery_files(table, tmp_path, "val")
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("Sequence,") and lines[1].startswith("mean,") and lines[2].startswith("bear,")
    data = json.loads(js.read_text())
    assert data["per_sequence"]["bear"]["FG-ARI"] == 0.5
    assert data["FG-ARI per frame index"] == pytest.approx([0.5, 0.7])


def test_format_table() -> None:
    text = format_table(_table())
    assert "J&F-Mean" in text and "dog_2" in text and "0.558" in text
