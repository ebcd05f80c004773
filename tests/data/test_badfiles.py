"""The bad-file list on disk (location, staleness, fallback) and the record of what training skipped."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest

from dinosavi.data.badfiles import INDEX_NAME, BadFile, BadFileIndex, Skip, SkipLog


def _files(root: Path) -> tuple[Path, Path]:
    (root / "class").mkdir(parents=True)
    bad, dropped = root / "class" / "bad.mp4", root / "class" / "empty.mp4"
    bad.write_bytes(b"garbled")
    dropped.write_bytes(b"")
    return bad, dropped


def test_list_round_trip_next_to_the_data(tmp_path):
    bad, dropped = _files(tmp_path / "videos")
    index = BadFileIndex(tmp_path / "videos")
    assert index.load() == {}
    where = index.add([Skip(3, str(bad), "cannot decode"), Skip(-1, str(dropped), "cannot open")])
    assert where == tmp_path / "videos" / INDEX_NAME and index.path == where
    listed = json.loads(where.read_text())["files"]
    assert sorted(listed) == ["class/bad.mp4", "class/empty.mp4"]  # relative: the folder can move
    assert BadFileIndex(tmp_path / "videos").load() == {
        str(bad): BadFile("cannot decode", opens=True), str(dropped): BadFile("cannot open", opens=False)}


def test_a_changed_or_removed_file_is_tried_again(tmp_path):
    bad, dropped = _files(tmp_path)
    BadFileIndex(tmp_path).add([Skip(0, str(bad), "x"), Skip(-1, str(dropped), "y")])
    bad.write_bytes(b"repaired, longer")
    dropped.unlink()
    assert BadFileIndex(tmp_path).load() == {}


def test_read_only_data_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    root = tmp_path / "shared" / "kinetics"
    bad, _ = _files(root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    import dinosavi.data.badfiles as badfiles

    write = badfiles.write_atomic

    def read_only_root(path, data):
        if Path(path).is_relative_to(root):
            raise PermissionError(errno.EROFS, f"Cannot write {path}: Read-only file system")
        write(path, data)

    monkeypatch.setattr(badfiles, "write_atomic", read_only_root)
    where = BadFileIndex(root).add([Skip(0, str(bad), "cannot decode")])
    assert where is not None and where.is_relative_to(tmp_path / "cache" / "dinosavi" / "bad-files")
    assert not (root / INDEX_NAME).exists()
    assert BadFileIndex(root).load() == {str(bad): BadFile("cannot decode")}


def test_nowhere_to_write_is_a_warning_not_an_error(tmp_path, monkeypatch, caplog):
    bad, _ = _files(tmp_path / "data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def full(path, data):
        raise OSError(errno.ENOSPC, f"Cannot write {path}: No space left on device")

    monkeypatch.setattr("dinosavi.data.badfiles.write_atomic", full)
    with caplog.at_level(logging.WARNING, logger="dinosavi.data.badfiles"):
        assert BadFileIndex(tmp_path / "data").add([Skip(0, str(bad), "x")]) is None
    assert "No space left on device" in caplog.text and "tried again" in caplog.text


def test_a_damaged_list_is_ignored_with_a_warning(tmp_path, caplog):
    _files(tmp_path)
    (tmp_path / INDEX_NAME).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="dinosavi.data.badfiles"):
        assert BadFileIndex(tmp_path).load() == {}
    assert str(tmp_path / INDEX_NAME) in caplog.text


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
    assert str(bad) in message and str(tmp_path / INDEX_NAME) in message
    with pytest.raises(ValueError, match=r"data.max_bad_fraction must lie in \[0, 1\], got 2"):
        SkipLog(tmp_path, 10, 2.0, None)
