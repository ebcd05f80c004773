"""The bad-file list on disk (location, staleness, fallback) and the record of what training skipped."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

from dinosavi.data.badfiles import INDEX_NAME, BadFile, BadFileIndex, Skip, SkipLog, cache_dir


def _files(root: Path) -> tuple[Path, Path]:
    (root / "class").mkdir(parents=True)
    bad, dropped = root / "class" / "bad.mp4", root / "class" / "empty.mp4"
    bad.write_bytes(b"garbled")
    dropped.write_bytes(b"")
    return bad, dropped


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_list_round_trip_in_the_cache_never_in_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DINOSAVI_CACHE", str(tmp_path / "cache"))
    bad, dropped = _files(tmp_path / "videos")
    before = _tree(tmp_path / "videos")
    index = BadFileIndex(tmp_path / "videos")
    assert index.load() == {}
    where = index.add([Skip(3, str(bad), "cannot decode"), Skip(-1, str(dropped), "cannot open")])
    assert where == index.location == index.path and where.is_relative_to(tmp_path / "cache" / "bad-files")
    assert _tree(tmp_path / "videos") == before  # nothing of ours in the dataset folder
    listed = json.loads(where.read_text())["files"]
    assert sorted(listed) == ["class/bad.mp4", "class/empty.mp4"]  # relative: the folder can move
    assert BadFileIndex(tmp_path / "videos").load() == {
        str(bad): BadFile("cannot decode", opens=True), str(dropped): BadFile("cannot open", opens=False)}
    assert BadFileIndex(tmp_path / "other").location != where  # keyed by the dataset


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DINOSAVI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dinosavi"
    monkeypatch.setenv("DINOSAVI_CACHE", str(tmp_path / "mine"))
    assert BadFileIndex(tmp_path).location.parent == tmp_path / "mine" / "bad-files"


def test_a_list_older_versions_left_in_the_data_folder_is_read_never_written(tmp_path):
    bad, dropped = _files(tmp_path / "videos")
    stat = bad.stat()
    legacy = tmp_path / "videos" / INDEX_NAME
    legacy.write_text(json.dumps({"version": 1, "files": {
        "class/bad.mp4": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "reason": "old", "opens": True}}}))
    before = _tree(tmp_path / "videos")
    index = BadFileIndex(tmp_path / "videos")
    assert index.load() == {str(bad): BadFile("old")}
    index.add([Skip(-1, str(dropped), "cannot open")])
    assert _tree(tmp_path / "videos") == before
    assert set(BadFileIndex(tmp_path / "videos").load()) == {str(bad), str(dropped)}


def test_a_changed_or_removed_file_is_tried_again(tmp_path):
    bad, dropped = _files(tmp_path)
    BadFileIndex(tmp_path).add([Skip(0, str(bad), "x"), Skip(-1, str(dropped), "y")])
    bad.write_bytes(b"repaired, longer")
    dropped.unlink()
    assert BadFileIndex(tmp_path).load() == {}


def test_nowhere_to_write_is_a_warning_not_an_error(tmp_path, monkeypatch, caplog):
    bad, _ = _files(tmp_path / "data")

    def full(path, data):
        raise OSError(errno.ENOSPC, f"Cannot write {path}: No space left on device")

    monkeypatch.setattr("dinosavi.data.badfiles.write_atomic", full)
    with caplog.at_level(logging.WARNING, logger="dinosavi.data.badfiles"):
        assert BadFileIndex(tmp_path / "data").add([Skip(0, str(bad), "x")]) is None
    assert "No space left on device" in caplog.text and "tried again" in caplog.text


def test_a_damaged_list_is_ignored_with_a_warning(tmp_path, caplog):
    _files(tmp_path)
    index = BadFileIndex(tmp_path)
    index.location.parent.mkdir(parents=True, exist_ok=True)
    index.location.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="dinosavi.data.badfiles"):
        assert index.load() == {}
    assert str(index.location) in caplog.text


def test_skip_log_counts_videos_and_names_the_limit(tmp_path, caplog):
    bad, dropped = _files(tmp_path)
    log = SkipLog(tmp_path, num_videos=10, max_fraction=0.15, index=BadFileIndex(tmp_path))
    with caplog.at_level(logging.WARNING, logger="dinosavi.data.badfiles"):
        assert len(log.add([Skip(-1, str(dropped), "cannot open")])) == 1
        assert log.add([Skip(-1, str(dropped), "cannot open")]) == []  # a repeat
        assert len(log.add([Skip(4, str(bad), "cannot decode"), Skip(4, str(bad) + "x", "another frame")])) == 1
    assert str(bad) in caplog.text and str(dropped) in caplog.text
    assert log.count == 2 and log.share == 0.2 and log.over_limit
    message = str(log.error())
    assert "2 of the 10 videos" in message and "data.max_bad_fraction=0.15" in message
    assert str(bad) in message and str(log.index.location) in message
    with pytest.raises(ValueError, match=r"data.max_bad_fraction must lie in \[0, 1\], got 2"):
        SkipLog(tmp_path, 10, 2.0, None)
