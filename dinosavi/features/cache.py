"""Filling the feature store: ``mode=cache``, and the first pass of training clips read from the store
(:class:`dinosavi.features.clips.StoreClips`).

:func:`cache_features` encodes every frame of a dataset's source groups once per resolution (for
``mode=cache``, ``features.resolutions`` of :func:`dinosavi.features.space.resolution`) and writes them
to the store. A thread decodes (and verifies) the next groups while
the encoder runs; a rerun finds every entry, checks its checksum and encodes nothing.

Shapes: ``T`` frames, ``D`` channels, ``h, w`` feature grid, ``H, W`` pixels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from dinosavi.data.badfiles import UnreadableFileError
from dinosavi.data.davis import DavisDataset, read_frames
from dinosavi.data.decode import decode_video, find_videos
from dinosavi.features.digests import file_digest, video_frame_digest
from dinosavi.features.space import FeatureSpace
from dinosavi.features.store import FeatureStore

__all__ = ["CacheStats", "SourceGroup", "cache_features", "davis_groups", "movi_groups", "video_groups"]

log = logging.getLogger(__name__)


@dataclass
class SourceGroup:
    """One sequence (its JPEG frames) or one video file (decoded at ``frame_rate``): a shard of the store."""

    name: str
    paths: list[Path]
    video: bool = False
    frame_rate: float | None = None

    def decode(self) -> Tensor:
        """All frames, ``(T, 3, H, W)`` uint8 at the source's size."""
        return decode_video(self.paths[0], self.frame_rate) if self.video else read_frames(self.paths)

    def digests(self, store: FeatureStore, length: int | None = None) -> list[str] | None:
        """Source digest of each frame; None for a video whose frame count is not yet known."""
        if not self.video:
            return [file_digest(p) for p in self.paths]
        source = f"{file_digest(self.paths[0])}@{self.frame_rate}"
        if length is not None:
            store.set_length(source, length)
        length = store.length(source)
        if length is None:
            return None
        return [video_frame_digest(source, self.frame_rate, i) for i in range(length)]


def davis_groups(root: str | Path, splits: Sequence[str] | None, year: str = "2017",
                 quality: str = "480p") -> list[SourceGroup]:
    """The sequences of ``splits`` (every split file under ``ImageSets/<year>`` when None), each once."""
    if splits is None:
        folder = Path(root) / "ImageSets" / year
        splits = sorted(p.stem for p in folder.glob("*.txt"))
        if not splits:
            raise FileNotFoundError(f"No split files (*.txt) in {folder}")
    groups: dict[str, SourceGroup] = {}
    for split in splits:
        davis = DavisDataset(root, split, year=year, quality=quality, annotations="none")
        for name in davis.sequence_names:
            groups.setdefault(name, SourceGroup(name, davis.frame_paths(name)))
    return list(groups.values())


def movi_groups(root: str | Path, split: str | None) -> list[SourceGroup]:
    """Every video of a MOVi export's ``split`` (its frame folders)."""
    from dinosavi.data.movi import MoviDataset

    movi = MoviDataset(root, split)
    return [SourceGroup(n, movi.frame_paths(n)) for n in movi.sequence_names]


def video_groups(root: str | Path, frame_rate: float | None) -> list[SourceGroup]:
    """Every video file under ``root``, decoded at ``frame_rate``."""
    root = Path(root)
    return [SourceGroup(str(p.relative_to(root)), [p], video=True, frame_rate=frame_rate) for p in find_videos(root)]


@dataclass
class CacheStats:
    """What a cache pass did: frames seen, frames encoded (per resolution), and each group's digests."""

    frames: int = 0
    encoded: int = 0
    seconds: float = 0.0
    digests: list[list[str]] = field(default_factory=list)


@dataclass
class _Prepared:
    group: SourceGroup
    digests: list[str]
    missing: list[FeatureSpace]
    frames: Tensor | None
    error: UnreadableFileError | None = None


def _prepare(group: SourceGroup, store: FeatureStore, spaces: Sequence[FeatureSpace],
             skip_unreadable: bool = False) -> _Prepared:
    """Hash the sources, verify the stored entries, decode the frames when some space lacks them.
    With ``skip_unreadable`` an unreadable source is returned as ``error`` instead of raised."""
    try:
        return _prepare_group(group, store, spaces)
    except UnreadableFileError as error:
        if not skip_unreadable:
            raise
        return _Prepared(group, [], [], None, error)


def _prepare_group(group: SourceGroup, store: FeatureStore, spaces: Sequence[FeatureSpace]) -> _Prepared:
    digests = group.digests(store)
    frames = None
    if digests is None:  # a video seen for the first time: its length comes from decoding it
        frames = group.decode()
        digests = group.digests(store, length=len(frames))
        assert digests is not None
    missing = [s for s in spaces if s.read(digests) is None]
    if missing and frames is None:
        frames = group.decode()
        if len(frames) != len(digests):
            raise ValueError(f"{group.name}: decoded {len(frames)} frames, the store recorded {len(digests)}")
    return _Prepared(group, digests, missing, frames)


def _prefetch(groups: Sequence[SourceGroup], store: FeatureStore, spaces: Sequence[FeatureSpace],
              depth: int = 2, skip_unreadable: bool = False) -> Iterator[_Prepared]:
    """:func:`_prepare` each group on a background thread, ``depth`` groups ahead, in order."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: list[Future[_Prepared]] = []
        try:
            for group in groups:
                queue.append(pool.submit(_prepare, group, store, spaces, skip_unreadable))
                if len(queue) > depth:
                    yield queue.pop(0).result()
            while queue:
                yield queue.pop(0).result()
        finally:
            for future in queue:
                future.cancel()


def cache_features(store: FeatureStore, spaces: Sequence[FeatureSpace], groups: Sequence[SourceGroup],
                   show_progress: bool = True,
                   on_unreadable: Callable[[int, UnreadableFileError], None] | None = None) -> CacheStats:
    """Make sure every frame of ``groups`` is stored in every space; encode only what is missing or corrupt.

    The manifest is flushed on the way out, also when interrupted, so a rerun continues after the last
    finished shard. An unreadable source is an error, or, with ``on_unreadable``, reported as
    ``on_unreadable(group index, error)`` and given no digests.
    """
    stats, t0 = CacheStats(), time.perf_counter()
    total = None if any(g.video for g in groups) else sum(len(g.paths) for g in groups)
    columns = (TextColumn("[bold]cache"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
               TextColumn("{task.fields[fps]:.1f} frames/s, encoded {task.fields[encoded]}"), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not show_progress) as progress:
            task = progress.add_task("cache", total=total, fps=0.0, encoded=0)
            for index, prepared in enumerate(_prefetch(groups, store, spaces,
                                                       skip_unreadable=on_unreadable is not None)):
                if prepared.error is not None:
                    assert on_unreadable is not None
                    on_unreadable(index, prepared.error)
                    stats.digests.append([])
                    continue
                for space in prepared.missing:
                    assert prepared.frames is not None
                    space.write(prepared.group.name, prepared.digests, space.encode(prepared.frames))
                    stats.encoded += len(prepared.digests)
                stats.frames += len(prepared.digests)
                stats.digests.append(prepared.digests)
                progress.update(task, completed=stats.frames, encoded=stats.encoded,
                                fps=stats.frames / (time.perf_counter() - t0))
    finally:
        store.flush()
    stats.seconds = time.perf_counter() - t0
    return stats
