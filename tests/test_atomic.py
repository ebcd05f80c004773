"""Atomic writes: success replaces the target, failure leaves it and no temporary file behind."""

from __future__ import annotations

import errno

import pytest

from dinosavi.atomic import atomic_path, write_atomic


def test_write_atomic_replaces_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "b.csv"
    write_atomic(target, "x,y\n1,2\n")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["b.csv"]


def test_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"saved by the user")
    with pytest.raises(RuntimeError, match="encoder died"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"saved by the user"
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_os_error_names_the_target_and_keeps_its_errno(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    write_atomic(target, "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OSError, match=rf"Cannot write {target}: No space left on device; the previous manifest"
                       ) as info:
        write_atomic(target, "new")
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="nothing was written"):
        write_atomic(tmp_path / "fresh.json", "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]

