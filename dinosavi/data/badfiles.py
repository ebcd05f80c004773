"""Unreadable training files: the error that names them, the record of what training skipped, and the
list on disk that remembers them across runs.

Large video collections (Kinetics-400 and friends) hold a fraction of a percent of unreadable or
truncated files. Training skips the *video* such a file belongs to (a video file, or the frame folder
of a DAVIS/MOVi sequence whose frame is unreadable): its clips are replaced by clips of the next
readable video, so batches keep their size and the replacement is a pure function of which files are
bad. Each skip is logged with its path; training stops with an error only when the share of skipped
videos passes ``data.max_bad_fraction``. Evaluation, ``mode=cache`` and ``mode=score`` stay strict.

The list of bad files is kept in dinosavi's cache folder, keyed by the dataset:
``<cache>/bad-files/<hash of the resolved data.root>.json``, where ``<cache>`` is ``$DINOSAVI_CACHE``,
else ``$XDG_CACHE_HOME/dinosavi``, else ``~/.cache/dinosavi``. Nothing is ever written into the dataset
folder (datasets are often read-only, shared mounts); a list that older versions wrote there,
``<data.root>/.dinosavi-bad-files.json``, is still read. An entry holds the file's size and modification
time: a file that changed since (re-downloaded, repaired) is tried again. Delete the list to retry
everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dinosavi.atomic import write_atomic

__all__ = ["INDEX_NAME", "MAX_BAD_FRACTION", "BadFile", "BadFileIndex", "Skip", "SkipLog", "UnreadableFileError",
           "cache_dir"]

log = logging.getLogger(__name__)

INDEX_NAME = ".dinosavi-bad-files.json"  # where older versions wrote the list, in data.root: read only
INDEX_VERSION = 1
MAX_BAD_FRACTION = 0.01  # the share of unreadable videos a run may skip by default (data.max_bad_fraction)


class UnreadableFileError(ValueError):
    """A file that cannot be decoded: corrupt, truncated, empty or gone. ``path`` names it."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


@dataclass(frozen=True)
class Skip:
    """A video that training skips.

    Attributes:
        video: its position in the clip dataset; -1 for a file dropped when the dataset was built.
        path: the unreadable file.
        reason: the error it gave.
    """

    video: int
    path: str
    reason: str


@dataclass(frozen=True)
class BadFile:
    """A file listed as unreadable.

    Attributes:
        reason: the error it gave.
        opens: it could be opened (its clips failed later), so it keeps its place among the videos;
            a file that cannot even be opened is dropped when the dataset is built, without opening it again.
    """

    reason: str
    opens: bool = True


def cache_dir() -> Path:
    """dinosavi's cache folder: ``$DINOSAVI_CACHE``, else ``$XDG_CACHE_HOME/dinosavi``, else ``~/.cache/dinosavi``."""
    if os.environ.get("DINOSAVI_CACHE"):
        return Path(os.environ["DINOSAVI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dinosavi"


class BadFileIndex:
    """The bad files under one data root, remembered in the cache folder (see the module docstring).

    Args:
        root: the data root (``data.root``).

    Attributes:
        location: the list's file, ``<cache>/bad-files/<hash of the resolved root>.json``.
        legacy: the list older versions kept in the data folder; read when present, never written.
        path: where the list was last written (None before, or when it could not be).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)  # as given: datasets name their files below it the same way
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        self.location = cache_dir() / "bad-files" / f"{digest}.json"
        self.legacy = self.root / INDEX_NAME
        self.path: Path | None = None

    def _key(self, path: str | Path) -> str:
        path = Path(path)
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path.resolve())

    def _entries(self) -> dict[str, dict[str, object]]:
        entries: dict[str, dict[str, object]] = {}
        for location in (self.legacy, self.location):  # the cache's entries win
            if not location.is_file():
                continue
            try:
                data = json.loads(location.read_text())
                files = data["files"] if data.get("version") == INDEX_VERSION else {}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                log.warning("ignoring the bad-file list %s: unreadable (%s)", location, error)
                continue
            entries.update({k: v for k, v in files.items() if isinstance(v, dict)})
        return entries

    def load(self) -> dict[str, BadFile]:
        """Bad files whose size and modification time are unchanged since they were listed, by path
        (``root / relative path``, as the datasets name them)."""
        out = {}
        for key, entry in self._entries().items():
            path = self.root / key
            try:
                stat = path.stat()
            except OSError:
                continue  # gone: nothing to skip
            if (stat.st_size, stat.st_mtime_ns) == (entry.get("size"), entry.get("mtime_ns")):
                reason = str(entry.get("reason", "listed as unreadable"))
                out[str(path)] = BadFile(reason, bool(entry.get("opens", True)))
        return out

    def add(self, skips: Iterable[Skip]) -> Path | None:
        """Add files to the list and write it (atomically) to :attr:`location`; never into the data folder.

        Returns:
            Where the list was written, or None when it cannot be written (logged).
        """
        entries = self._entries()
        for skip in skips:
            try:
                stat = Path(skip.path).stat()
            except OSError:
                continue
            entries[self._key(skip.path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "reason": skip.reason,
                                             "opens": skip.video >= 0}
        text = json.dumps({"version": INDEX_VERSION, "root": str(self.root.resolve()), "files": entries}, indent=1)
        try:
            write_atomic(self.location, text)
        except OSError as error:
            log.warning("could not write the bad-file list (%s); the files will be tried again next run", error)
            return None
        self.path = self.location
        return self.location


class SkipLog:
    """What a training run skipped: logs each skipped video with its file, remembers the files on disk,
    counts them for TensorBoard and says when their share passes ``max_fraction``.

    Args:
        root: the data root, named in messages.
        num_videos: videos found under it (readable or not): the denominator of the share.
        max_fraction: ``data.max_bad_fraction``.
        index: the list on disk; None keeps the record in memory only.
    """

    def __init__(self, root: str | Path, num_videos: int, max_fraction: float, index: BadFileIndex | None) -> None:
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"data.max_bad_fraction must lie in [0, 1], got {max_fraction}")
        self.root, self.num_videos, self.max_fraction, self.index = root, num_videos, max_fraction, index
        self.skipped: dict[tuple[int, str], Skip] = {}  # one per video (dropped files: one per file)

    @property
    def count(self) -> int:
        """Videos skipped so far."""
        return len(self.skipped)

    @property
    def share(self) -> float:
        return self.count / max(1, self.num_videos)

    @property
    def over_limit(self) -> bool:
        """Whether the skipped share passes ``max_fraction``."""
        return self.share > self.max_fraction

    def add(self, skips: Iterable[Skip]) -> list[Skip]:
        """Record skips (repeats are ignored); log and list on disk the new ones, which are returned."""
        new = []
        for skip in skips:
            key = (skip.video, "") if skip.video >= 0 else (-1, skip.path)
            if key not in self.skipped:
                self.skipped[key] = skip
                new.append(skip)
        for skip in new:
            log.warning("skipping unreadable file %s (%d of %d videos skipped so far): %s", skip.path, self.count,
                        self.num_videos, skip.reason)
        if new and self.index is not None:
            where = self.index.add(new)
            if where is not None:
                log.info("listed %d unreadable file(s) in %s; later runs skip them without reading them",
                         len(new), where)
        return new

    def error(self, suffix: str = "") -> ValueError:
        """The error that stops training when :attr:`over_limit`; ``suffix`` is added to its message."""
        listed = f"; they are listed in {self.index.path}" if self.index is not None and self.index.path else ""
        files = ", ".join(sorted(s.path for s in self.skipped.values())[:5])
        return ValueError(
            f"{self.count} of the {self.num_videos} videos under {self.root} are unreadable ({self.share:.1%}), "
            f"more than data.max_bad_fraction={self.max_fraction:g}: {files}{' ...' if self.count > 5 else ''}"
            f"{listed}{suffix}. Repair or remove them, or raise data.max_bad_fraction"
        )
