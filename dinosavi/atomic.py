"""Atomic file writes: a failure leaves nothing half-written and never touches the existing file.

Every writer in the package (CSVs, JSON, PNGs, JPEGs, MP4s, safetensors shards and checkpoints)
writes to a temporary file beside its target and renames it over the target only when it succeeded.
An ``OSError`` on the way (a full disk, a read-only folder) is re-raised with a message naming the
target and saying that the previous file, if any, is unchanged; the temporary file is removed.
The written file gets the permissions the user's umask gives any new file (0644 under umask 022), not
the owner-only 0600 of :func:`tempfile.mkstemp`: results are meant to be shared.

:func:`remove_on_failure` does the same for a whole output folder: files a failed run wrote are removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove_on_failure", "write_atomic"]


def _create_temp(path: Path) -> Path:
    """Create a new, empty file beside ``path`` (a random hidden name) with mode ``0666`` less the umask,
    as ``open()`` gives any new file; exclusive creation, so it is never another writer's file."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _write_error(path: Path, error: OSError, existed: bool) -> OSError:
    """``error`` restated with the target and what became of it (same errno, so the same OSError subclass)."""
    kept = f"the previous {path.name} is unchanged" if existed else "nothing was written"
    message = f"Cannot write {path}: {error.strerror or error}; {kept}"
    return OSError(error.errno, message) if error.errno is not None else OSError(message)


@contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block succeeds
    (flushed to disk first when ``fsync``), removed when it raises. The parent folder is created. The
    file's mode is ``0666`` less the umask, also when the writer replaced the temporary file with its own.

    Raises:
        OSError: creating, writing or renaming failed; the message names ``path``.
    """
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path)
        mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 less the umask, as the kernel applied it
    except OSError as error:
        raise _write_error(path, error, existed) from error
    try:
        yield tmp
        os.chmod(tmp, mode)  # a writer may have put its own file there (safetensors writes one of mode 0600)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, error, existed) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8 encoded as is, no newline translation) to ``path`` atomically,
    flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def remove_on_failure(folder: str | Path) -> Iterator[None]:
    """Remove what the block added under ``folder`` if it raises; files that were there before stay.

    For runs whose outputs are only useful complete (an evaluation's PNGs, CSVs and report): a run that
    fails part-way leaves the folder as it found it (the log and config written before stay).
    """
    folder = Path(folder)
    existed = folder.is_dir()
    before = set(folder.rglob("*")) if existed else set()
    try:
        yield
    except BaseException:
        if folder.is_dir():
            for path in sorted(set(folder.rglob("*")) - before, key=lambda p: len(p.parts)):  # parents first
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)  # a new folder holds only new files
                elif path.exists() or path.is_symlink():
                    path.unlink(missing_ok=True)
            if not existed and not any(folder.iterdir()):
                folder.rmdir()
        raise
