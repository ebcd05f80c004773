"""Atomic writes: success replaces the target, failure leaves it and no temporary file behind."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from dinosavi.atomic import atomic_path, remove_on_failure, write_atomic


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


def test_remove_on_failure_removes_only_what_the_block_added(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.png").write_bytes(b"kept")
    (tmp_path / "dinosavi.log").write_text("log")
    with pytest.raises(ValueError, match="bad mask"), remove_on_failure(tmp_path):
        (tmp_path / "results" / "new.png").write_bytes(b"partial")
        (tmp_path / "overlays" / "seq").mkdir(parents=True)
        (tmp_path / "overlays" / "seq" / "0.jpg").write_bytes(b"partial")
        raise ValueError("bad mask")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "dinosavi.log", "results", "results/old.png"]
    with remove_on_failure(tmp_path):
        (tmp_path / "done.csv").write_text("ok")
    assert (tmp_path / "done.csv").is_file()
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError), remove_on_failure(fresh):
        (fresh / "a").mkdir(parents=True)
        raise ValueError
    assert not fresh.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_atomic(tmp_path / "config.yaml", "seed: 0\n")
        with atomic_path(tmp_path / "frame.png") as tmp:  # a writer that opens the temporary path itself
            tmp.write_bytes(b"png")
        write_atomic(tmp_path / "config.yaml", "seed: 1\n")  # replacing keeps the umask's mode
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "frame.png").stat().st_mode) == mode


def test_a_writer_that_replaces_the_temporary_file_still_gives_the_umasks_mode(tmp_path):
    """safetensors writes a file of its own, mode 0600, over the path it is given (checkpoints, shards)."""
    import torch
    from safetensors.torch import save_file

    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "last.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "last.safetensors").stat().st_mode) == 0o644
