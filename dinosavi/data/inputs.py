"""A user's videos for ``mode=segment``: what ``input=`` names, and its frames, streamed one at a time.

``input=`` is one video file (:data:`INPUT_VIDEO_EXTENSIONS`, decoded with PyAV), a folder of frames
(``.jpg``/``.jpeg``/``.png``, in natural order: ``frame2`` before ``frame10``) or a folder of videos
(searched recursively). Each becomes a :class:`VideoSource`; :func:`stream_frames` reads its frames
lazily after a frame-rate cap, a frame range and a resize (:class:`StreamOptions`), so a long,
high-resolution video is never held in memory.

Shapes: ``H, W`` pixels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
from PIL import Image

from dinosavi.data.badfiles import UnreadableFileError
from dinosavi.data.davis import open_image, read_rgb
from dinosavi.data.decode import VIDEO_EXTENSIONS, iter_frames, probe_length

__all__ = [
    "FRAME_EXTENSIONS",
    "INPUT_VIDEO_EXTENSIONS",
    "FrameStream",
    "StreamOptions",
    "VideoSource",
    "find_sources",
    "resized_size",
    "stream_frames",
]

INPUT_VIDEO_EXTENSIONS = (*VIDEO_EXTENSIONS, ".mov", ".mkv")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_VIDEO_RATE = 25  # what iter_frames assumes when a stream states no rate


@dataclass(frozen=True)
class StreamOptions:
    """How a source's frames are read.

    Attributes:
        max_fps: frame-rate cap: a faster source is resampled to it (for each time ``k / max_fps`` the
            first frame at or after it); None keeps every frame.
        short_side: resize frames so that their short side is this (aspect kept); None keeps the size.
        start: first frame of the range, counted after the cap.
        stop: end of the range (exclusive), counted after the cap; None: to the end.
        folder_fps: the frame rate of a folder of frames (a video file states its own).
    """

    max_fps: float | None = None
    short_side: int | None = None
    start: int = 0
    stop: int | None = None
    folder_fps: float = 24.0

    def __post_init__(self) -> None:
        if self.max_fps is not None and not self.max_fps > 0:
            raise ValueError(f"segment.max_fps must be positive or null, got {self.max_fps}")
        if self.short_side is not None and self.short_side < 1:
            raise ValueError(f"segment.short_side must be a positive number of pixels or null, got {self.short_side}")
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise ValueError(f"segment.start={self.start}, segment.stop={self.stop}: expected 0 <= start < stop "
                             "(stop null: to the end)")
        if not self.folder_fps > 0:
            raise ValueError(f"segment.folder_fps must be positive, got {self.folder_fps}")


@dataclass(frozen=True)
class VideoSource:
    """One video: a file, or a folder of frames.

    Attributes:
        name: the name of its output folder.
        path: the video file or the frame folder.
        frame_files: the frames of a folder, in order; empty for a video file.
    """

    name: str
    path: Path
    frame_files: tuple[Path, ...] = ()

    @property
    def is_file(self) -> bool:
        return not self.frame_files

    def native_rate(self, folder_fps: float) -> Fraction:
        """Frames per second of the source: the stream's average rate, or ``folder_fps`` for frames."""
        if not self.is_file:
            return _fraction(folder_fps)
        with _open(self.path) as container:
            rate = container.streams.video[0].average_rate
        return Fraction(rate) if rate else Fraction(DEFAULT_VIDEO_RATE)

    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the source's frames (from the header; nothing is decoded)."""
        if not self.is_file:
            width, height = open_image(self.frame_files[0]).size
            return height, width
        with _open(self.path) as container:
            stream = container.streams.video[0]
            return stream.height, stream.width


def _open(path: Path) -> av.container.InputContainer:
    """A video container with a video stream; an error naming the file otherwise."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise UnreadableFileError(path, f"Cannot open video {path}: {error}") from error
    if not container.streams.video:
        container.close()
        raise UnreadableFileError(path, f"{path} has no video stream; expected a video file")
    return container


def _fraction(rate: float) -> Fraction:
    return Fraction(rate).limit_denominator(1001)


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in INPUT_VIDEO_EXTENSIONS


def find_sources(path: str | Path) -> list[VideoSource]:
    """The videos ``input=`` names: a video file, a folder of frames, or a folder of videos.

    A folder that holds frames directly is one video (named after the folder), whatever else it holds;
    otherwise its video files, searched recursively, are the videos, each named after its path under
    the folder (``a/b.mp4`` -> ``a-b``).

    Raises:
        FileNotFoundError: ``path`` does not exist, or a folder holds neither frames nor videos.
        ValueError: a file that is not a video, or two videos that would share an output folder.
    """
    path = Path(path)
    expected = (f"a video file ({', '.join(INPUT_VIDEO_EXTENSIONS)}), a folder of frames "
                f"({', '.join(FRAME_EXTENSIONS)}) or a folder of videos")
    if not path.exists():
        raise FileNotFoundError(f"input={path} does not exist; expected {expected}")
    if path.is_file():
        if not _is_video(path):
            raise ValueError(f"input={path} is not a video file; expected {expected}")
        return [VideoSource(path.stem, path)]
    frames = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
                    key=_natural_key)
    if frames:
        stems: dict[str, Path] = {}
        for frame in frames:
            if frame.stem in stems:
                raise ValueError(f"input={path}: frames {stems[frame.stem]} and {frame} would both write "
                                 f"`{frame.stem}.png`; keep one")
            stems[frame.stem] = frame
        return [VideoSource(path.resolve().name, path, tuple(frames))]
    videos = sorted(p for p in path.rglob("*") if _is_video(p))
    if not videos:
        raise FileNotFoundError(f"input={path} holds no frames and no videos; expected {expected}")
    sources: dict[str, VideoSource] = {}
    for video in videos:
        name = "-".join(video.relative_to(path).with_suffix("").parts)
        if name in sources:
            raise ValueError(f"input={path}: {sources[name].path} and {video} would both write to `{name}/`; "
                             "rename one")
        sources[name] = VideoSource(name, video)
    return list(sources.values())


def resized_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(H, W)`` with the short side ``short_side`` (the long side rounded, aspect kept); as is when None."""
    if short_side is None:
        return height, width
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(1, round(width * scale))
    return max(1, round(height * scale)), short_side


def _selected(count: int, native: Fraction, cap: float | None) -> list[int]:
    """Indices of a ``count``-frame sequence at ``native`` fps kept by a cap (as
    :func:`~dinosavi.data.decode.iter_frames`)."""
    if cap is None or native <= cap:
        return list(range(count))
    keep, target = [], 0
    for index in range(count):
        seconds = index / native
        taken = False
        while target / cap <= seconds + 1e-6:
            taken = True
            target += 1
        if taken:
            keep.append(index)
    return keep


@dataclass
class FrameStream:
    """A source's frames after the cap, the range and the resize.

    Attributes:
        source: the source.
        rate: frames per second of the stream (the source's, or the cap when it is lower).
        size: ``(H, W)`` of the frames it yields.
        source_size: ``(H, W)`` of the source's frames.
        length: frames it is expected to yield (exact for frame folders; from the container's metadata
            for video files, so it may be off by a frame or two).
        frames: per frame, its name (the file stem of a frame, the 5-digit stream index of a video's frame)
            and the ``(H, W, 3)`` uint8 RGB frame; read as it is iterated (once).
    """

    source: VideoSource
    rate: Fraction
    size: tuple[int, int]
    source_size: tuple[int, int]
    length: int
    frames: Iterator[tuple[str, np.ndarray]]


def stream_frames(source: VideoSource, options: StreamOptions) -> FrameStream:
    """Open a source for streaming: its rate and sizes now, its frames as they are iterated.

    Raises:
        UnreadableFileError: (a ValueError) a video that cannot be opened or decoded, a frame that cannot
            be read or whose size differs from the first's (naming the file).
    """
    native = source.native_rate(options.folder_fps)
    capped = options.max_fps is not None and native > options.max_fps
    rate = _fraction(options.max_fps) if capped and options.max_fps is not None else native
    source_size = source.size()
    size = resized_size(*source_size, options.short_side)
    stop = options.stop
    if source.is_file:
        total = probe_length(source.path, options.max_fps if capped else None)
        length = max(0, min(total, stop if stop is not None else total) - options.start)
        frames = _video_frames(source.path, options.max_fps if capped else None, options.start, stop, size)
    else:
        kept = _selected(len(source.frame_files), native, options.max_fps)[options.start:stop]
        length = len(kept)
        frames = _folder_frames([source.frame_files[i] for i in kept], source_size, size)
    return FrameStream(source, rate, size, source_size, length, frames)


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 to ``size``, bilinear (antialiased when shrinking); always writable (torch wants it)."""
    if frame.shape[:2] == size:
        return frame if frame.flags.writeable else frame.copy()
    return np.array(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _video_frames(path: Path, rate: float | None, start: int, stop: int | None, size: tuple[int, int]
                  ) -> Iterator[tuple[str, np.ndarray]]:
    for index, frame in enumerate(islice(iter_frames(path, rate), start, stop), start=start):
        yield f"{index:05d}", _resize(frame, size)


def _folder_frames(files: list[Path], source_size: tuple[int, int], size: tuple[int, int]
                   ) -> Iterator[tuple[str, np.ndarray]]:
    for path in files:
        frame = read_rgb(path)
        if frame.shape[:2] != source_size:
            raise UnreadableFileError(
                path, f"Frame {path} has size {frame.shape[1]}x{frame.shape[0]} (WxH); expected "
                f"{source_size[1]}x{source_size[0]} like {files[0]}")
        yield path.stem, _resize(frame, size)
