"""Clip datasets for training: fixed-length clips from DAVIS-layout folders or video files.

Clip positions are a pure function of ``(seed, epoch, video)``: call ``set_epoch`` before each
epoch (in the main process, before the DataLoader workers start, i.e. without
``persistent_workers``) to get new clips; the same ``(seed, epoch)`` gives the same clips.
Videos shorter than one clip are skipped with a logged warning.

Unreadable files (see :mod:`dinosavi.data.badfiles`): a video file that cannot even be opened is
dropped when the dataset is built (``excluded``). With ``skip_bad`` (training), a clip whose video
turns out unreadable later is replaced by the same clip slot of the next readable video and the
video is marked bad (``bad``); files listed as bad (``known_bad``) are not read again. Without it,
an unreadable file is an error naming it. Either way clip positions do not depend on when a file was
found bad, so a resumed run draws the clips an uninterrupted one draws.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dinosavi.data.badfiles import BadFile, Skip, UnreadableFileError
from dinosavi.data.davis import DavisDataset, SequenceDataset, read_frames
from dinosavi.data.decode import check_frame_rate, decode_video, find_videos, iter_frames, probe_length
from dinosavi.data.resize import resize_frames

__all__ = [
    "ClipDataset",
    "DavisClips",
    "FrameClips",
    "VideoClips",
    "clip_frames",
    "clip_span",
    "clip_starts",
]

log = logging.getLogger(__name__)


def clip_span(frames_per_clip: int, stride: int = 1) -> int:
    """Frames a clip spans from its first frame to its last, both included: the shortest video that holds one
    clip of ``frames_per_clip`` frames, ``stride`` frames apart. The one place clip spans are computed."""
    return (frames_per_clip - 1) * stride + 1


def clip_frames(start: int, frames_per_clip: int, stride: int = 1) -> range:
    """The frame indices of the clip that starts at frame ``start``: ``start, start + stride, ...``,
    ``frames_per_clip`` of them."""
    return range(start, start + clip_span(frames_per_clip, stride), stride)


def clip_starts(
    num_frames: int, frames_per_clip: int, stride: int, clips_per_video: int, rng: np.random.Generator
) -> list[int]:
    """Random clip start frames, spread over the video.

    The valid starts are split into ``clips_per_video`` equal bins and one start is drawn in each,
    so clips cover the video; with more clips than valid starts, starts repeat.

    Args:
        num_frames: Frames in the video.
        frames_per_clip: Frames in one clip.
        stride: Step between a clip's frames (a clip spans :func:`clip_span` frames).
        clips_per_video: Starts to return.
        rng: Source of randomness.

    Returns:
        ``clips_per_video`` sorted starts, or ``[]`` when the video is shorter than one clip.
    """
    if frames_per_clip < 1 or stride < 1 or clips_per_video < 1:
        raise ValueError(
            f"clip_starts: expected frames_per_clip, stride, clips_per_video >= 1, "
            f"got {frames_per_clip}, {stride}, {clips_per_video}"
        )
    valid = num_frames - clip_span(frames_per_clip, stride) + 1  # the number of valid starts
    if valid < 1:
        return []
    edges = np.linspace(0, valid, clips_per_video + 1)
    draws = edges[:-1] + rng.random(clips_per_video) * (edges[1:] - edges[:-1])
    return sorted(min(int(d), valid - 1) for d in draws)


class ClipDataset(Dataset):
    """The base of every training-clip dataset: ``len = videos * clips_per_video``, starts per (seed, epoch, video), and
    the skipping of unreadable videos (see the module docstring).

    Subclasses implement :meth:`_clip` and set ``sources`` (the file or folder of each video).

    Attributes:
        skip_bad: replace the clips of unreadable videos instead of raising.
        bad: video index -> why it is skipped.
        excluded: files dropped when the dataset was built (``Skip.video == -1``).
        num_found: videos found, dropped ones included (the denominator of the skipped share).
    """

    def __init__(
        self, lengths: list[int], frames_per_clip: int, stride: int, clips_per_video: int, seed: int,
        skip_bad: bool = False,
    ) -> None:
        self.lengths, self.frames_per_clip, self.stride = lengths, frames_per_clip, stride
        self.clips_per_video, self.seed, self.epoch = clips_per_video, seed, 0
        self.skip_bad = skip_bad
        self.sources: list[Path] = []
        self.bad: dict[int, Skip] = {}
        self.excluded: list[Skip] = []
        self.num_found = len(lengths)
        self._found: list[Skip] = []  # skips not yet handed to the trainer

    def set_epoch(self, epoch: int) -> None:
        """Select the clips of ``epoch`` (deterministic given the seed)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths) * self.clips_per_video

    def video_frames(self, video: int) -> Tensor:
        """Every frame of video ``video`` (after resampling): ``(T, 3, H, W)`` uint8 at the clip size."""
        raise NotImplementedError

    def _clip(self, video: int, start: int) -> Any:
        """The clip of ``video`` that starts at frame ``start``; raises ``UnreadableFileError``."""
        raise NotImplementedError

    def prepare(self, batch: Any) -> Any:
        """What the training loop's main process makes of a collated batch before taking its features
        (:meth:`dinosavi.features.source.FeatureSource.batch`): the batch itself; features held in memory
        (:class:`dinosavi.features.memory.FeatureClips`) are added here, outside the data-loader workers."""
        return batch

    def frame_indices(self, start: int) -> range:
        """The frame indices of the clip that starts at frame ``start`` (:func:`clip_frames`)."""
        return clip_frames(start, self.frames_per_clip, self.stride)

    def _start(self, video: int, clip: int) -> int:
        rng = np.random.default_rng([self.seed, self.epoch, video])
        starts = clip_starts(
            self.lengths[video], self.frames_per_clip, self.stride, self.clips_per_video, rng
        )
        return starts[clip]

    def __getitem__(self, index: int) -> Any:
        """Clip ``index``; with ``skip_bad``, the same clip slot of the next readable video when its own
        video is unreadable."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        video, clip = divmod(index, self.clips_per_video)
        for offset in range(len(self.lengths)):
            candidate = (video + offset) % len(self.lengths)
            if candidate in self.bad:
                continue
            try:
                return self._clip(candidate, self._start(candidate, clip))
            except UnreadableFileError as error:
                if not self.skip_bad:
                    raise
                self.mark_bad(Skip(candidate, str(error.path), str(error)))
        raise ValueError(f"every video of this dataset is unreadable: {sorted(s.path for s in self.bad.values())}")

    def mark_bad(self, skip: Skip, report: bool = True) -> None:
        """Skip video ``skip.video`` from now on; ``report`` hands it to the next :meth:`take_skips`."""
        if skip.video >= 0 and skip.video not in self.bad:
            self.bad[skip.video] = skip
            if report:
                self._found.append(skip)

    def mark_known_bad(self, known_bad: Mapping[str, BadFile]) -> None:
        """With ``skip_bad``, mark the videos one of whose files is listed in ``known_bad``."""
        if not (self.skip_bad and known_bad):
            return
        for video, paths in enumerate(self._files()):
            for path in paths:
                if str(path) in known_bad:
                    self.mark_bad(Skip(video, str(path), known_bad[str(path)].reason))
                    break

    def _files(self) -> list[list[Path]]:
        """The files of each video."""
        return [[source] for source in self.sources]

    def adopt_skips(self, source: ClipDataset) -> None:
        """Take over ``source``'s record of unreadable videos (datasets built on its clip positions)."""
        self.skip_bad, self.sources, self.num_found = source.skip_bad, source.sources, source.num_found
        self.bad, self.excluded, self._found = dict(source.bad), source.excluded, source._found

    def take_skips(self) -> list[Skip]:
        """Skips found since the last call (in this process), dropped files included on the first call."""
        found, self._found = self.excluded + self._found, []
        self.excluded = []
        return found


def _keep_long_enough(
    root: Path, names: list[str], lengths: list[int], span: int
) -> tuple[list[str], list[int]]:
    kept = [(n, k) for n, k in zip(names, lengths) if k >= span]
    for name, length in zip(names, lengths):
        if length < span:
            log.warning("Skipping %s: %d frames, shorter than one clip (%d frames)", name, length, span)
    if not kept:
        raise ValueError(f"No video in {root} is long enough for a clip of {span} frames")
    return [n for n, _ in kept], [k for _, k in kept]


class FrameClips(ClipDataset):
    """Clips from the frame files of whole sequences (:class:`~dinosavi.data.davis.SequenceDataset`).

    Args:
        source: The sequences (DAVIS layout, MOVi frame folders, ...).
        frames_per_clip: T, frames per clip.
        stride: Step between the frames of a clip (start, start + stride, ...).
        clips_per_video: Clips drawn per sequence per epoch.
        size: (H, W) output size.
        seed: Seed of the clip positions.
        root: Named in the error when no sequence is long enough.
        skip_bad: Replace the clips of a sequence with an unreadable frame (training) instead of raising.
        known_bad: Files listed as unreadable (by path): their sequences are skipped unread.

    Raises:
        ValueError: No sequence is long enough for one clip.
    """

    def __init__(
        self,
        source: SequenceDataset,
        frames_per_clip: int,
        stride: int = 1,
        clips_per_video: int = 1,
        size: tuple[int, int] = (224, 224),
        seed: int = 0,
        root: str | Path = "the dataset",
        skip_bad: bool = False,
        known_bad: Mapping[str, BadFile] | None = None,
    ) -> None:
        paths = {name: source.frame_paths(name) for name in source.sequence_names}
        names, lengths = _keep_long_enough(Path(root), list(paths), [len(p) for p in paths.values()],
                                           clip_span(frames_per_clip, stride))
        super().__init__(lengths, frames_per_clip, stride, clips_per_video, seed, skip_bad)
        self.size, self.sequence_names = size, names
        self.paths = [paths[name] for name in names]  # frame files of each kept sequence
        self.sources = [p[0].parent for p in self.paths]
        self.num_found = len(paths)
        self.mark_known_bad(known_bad or {})

    def _files(self) -> list[list[Path]]:
        return self.paths

    def video_frames(self, video: int) -> Tensor:
        """Every frame of sequence ``video``: ``(T, 3, H, W)`` uint8 at ``size``."""
        return resize_frames(read_frames(self.paths[video]), self.size)

    def _clip(self, video: int, start: int) -> Tensor:
        """(T, 3, H, W) uint8 with T = ``frames_per_clip`` and (H, W) = ``size``."""
        paths = self.paths[video]
        return resize_frames(read_frames([paths[t] for t in self.frame_indices(start)]), self.size)


class DavisClips(FrameClips):
    """Clips from a DAVIS-layout folder (real DAVIS or :mod:`dinosavi.data.synthetic`).

    Args:
        root: Folder with ``JPEGImages`` and ``ImageSets``.
        split: Split file name, e.g. ``"train"``.
        year: Folder under ``ImageSets``.
        quality: Folder under ``JPEGImages``.
        frames_per_clip, stride, clips_per_video, size, seed, skip_bad, known_bad: as in :class:`FrameClips`.

    Raises:
        FileNotFoundError: Missing split file or sequence folder.
        ValueError: No sequence is long enough for one clip.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        frames_per_clip: int,
        stride: int = 1,
        clips_per_video: int = 1,
        size: tuple[int, int] = (224, 224),
        seed: int = 0,
        year: str = "2017",
        quality: str = "480p",
        skip_bad: bool = False,
        known_bad: Mapping[str, BadFile] | None = None,
    ) -> None:
        davis = DavisDataset(root, split=split, year=year, quality=quality, annotations="none")
        super().__init__(davis, frames_per_clip, stride, clips_per_video, size, seed, root=davis.root,
                         skip_bad=skip_bad, known_bad=known_bad)


class VideoClips(ClipDataset):
    """Clips from a folder of video files, e.g. Kinetics-400 with one sub-folder per class.

    Lengths come from container metadata, probed once at construction; a clip is decoded
    sequentially up to its last frame. If the metadata over-estimates a video's length, the clip is
    taken from the video's end (and padded by repeating the last frame if still too short).

    Args:
        root: Folder searched recursively for :data:`~dinosavi.data.decode.VIDEO_EXTENSIONS` (case-insensitive).
        frames_per_clip: T, consecutive frames (after resampling) per clip.
        frame_rate: Resample videos to this many frames per second; native rate if None.
        clips_per_video: Clips drawn per video per epoch.
        size: (H, W) output size.
        seed: Seed of the clip positions.
        num_threads: Threads probing the videos' metadata.
        skip_bad: Drop videos that cannot be opened and replace the clips of videos that fail to decode
            later (training), instead of raising.
        known_bad: Files listed as unreadable (by path): skipped without decoding them (those that could
            not be opened are not opened again).

    Raises:
        FileNotFoundError: ``root`` is missing or holds no video file.
        UnreadableFileError: A video cannot be opened (without ``skip_bad``; names it).
        ValueError: No video is long enough for one clip; ``frame_rate`` is not positive.
    """

    def __init__(
        self,
        root: str | Path,
        frames_per_clip: int,
        frame_rate: float | None = None,
        clips_per_video: int = 1,
        size: tuple[int, int] = (224, 224),
        seed: int = 0,
        num_threads: int = 4,
        skip_bad: bool = False,
        known_bad: Mapping[str, BadFile] | None = None,
    ) -> None:
        check_frame_rate(frame_rate)
        self.root, self.frame_rate, self.size = Path(root), frame_rate, size
        videos = find_videos(self.root)
        known_bad = known_bad or {}
        self._unopenable = {p: b.reason for p, b in known_bad.items() if not b.opens} if skip_bad else {}
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            probed = list(pool.map(self._safe_probe, videos))
        excluded = [Skip(-1, str(v), error) for v, (_, error) in zip(videos, probed) if error is not None]
        if excluded and not skip_bad:
            raise UnreadableFileError(excluded[0].path, excluded[0].reason)
        readable = [(v, n) for v, (n, error) in zip(videos, probed) if error is None]
        if not readable:
            raise ValueError(f"No video in {self.root} can be opened: {excluded[0].reason} ...")
        names, kept = _keep_long_enough(self.root, [str(v) for v, _ in readable], [n for _, n in readable],
                                        clip_span(frames_per_clip))
        super().__init__(kept, frames_per_clip, 1, clips_per_video, seed, skip_bad)
        self.videos = [Path(n) for n in names]
        self.sources, self.excluded, self.num_found = self.videos, excluded, len(videos)
        self.mark_known_bad(known_bad)

    def _safe_probe(self, path: Path) -> tuple[int, str | None]:
        """(frames, None), or (0, why) when the file cannot be opened (or was listed as such)."""
        if str(path) in self._unopenable:
            return 0, self._unopenable[str(path)]
        try:
            return probe_length(path, self.frame_rate), None
        except (av.error.FFmpegError, OSError) as error:
            return 0, f"Cannot open video {path}: {error}"

    def video_frames(self, video: int) -> Tensor:
        """Every frame of video ``video`` at ``frame_rate``: ``(T, 3, H, W)`` uint8 at ``size``."""
        return resize_frames(decode_video(self.videos[video], self.frame_rate), self.size)

    def _clip(self, video: int, start: int) -> Tensor:
        """(T, 3, H, W) uint8 with T = ``frames_per_clip`` and (H, W) = ``size``."""
        stop = self.frame_indices(start).stop
        window: deque[np.ndarray] = deque(maxlen=self.frames_per_clip)  # the last T frames decoded
        for count, frame in enumerate(iter_frames(self.videos[video], self.frame_rate), start=1):
            window.append(frame)
            if count == stop:
                break
        if not window:
            raise UnreadableFileError(self.videos[video], f"Video {self.videos[video]} has no decodable frames")
        clip = list(window) + [window[-1]] * (self.frames_per_clip - len(window))
        tensor = torch.from_numpy(np.stack(clip)).permute(0, 3, 1, 2).contiguous()
        return resize_frames(tensor, self.size)
