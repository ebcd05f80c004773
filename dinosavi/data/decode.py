"""Video files: finding them, probing their length and decoding them with PyAV, resampled to a frame rate.

Resampling is by presentation time: for each time ``k / frame_rate`` the first decoded frame at or
after it (frames repeat when upsampling). A file that cannot be opened or decoded raises
:class:`~dinosavi.data.badfiles.UnreadableFileError` naming it.

Shapes: ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from dinosavi.data.badfiles import UnreadableFileError

__all__ = [
    "VIDEO_EXTENSIONS",
    "check_frame_rate",
    "decode_video",
    "find_videos",
    "iter_frames",
    "probe_length",
]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi")
_EPS = 1e-6


def find_videos(root: Path) -> list[Path]:
    """Video files under ``root`` (recursive, extensions case-insensitive), sorted."""
    if not root.is_dir():
        raise FileNotFoundError(f"Video folder not found: {root}")
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not videos:
        raise FileNotFoundError(
            f"No video files in {root} (searched recursively for {', '.join(VIDEO_EXTENSIONS)})"
        )
    return videos


def iter_frames(path: Path, frame_rate: float | None) -> Iterator[np.ndarray]:
    """Decode a video lazily, frame by frame.

    Args:
        path: Video file.
        frame_rate: Resample to this many frames per second, as in :func:`decode_video`; all frames if None.

    Yields:
        ``(H, W, 3)`` uint8 RGB frames.

    Raises:
        UnreadableFileError: (a ValueError) The file cannot be opened or decoded.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise UnreadableFileError(path, f"Cannot open video {path}: {error}") from error
    with container:
        if not container.streams.video:
            raise UnreadableFileError(path, f"{path} has no video stream; expected a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        first: float | None = None
        target = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                seconds = frame.time if frame.time is not None else index / rate
                first = seconds if first is None else first
                image = frame.to_ndarray(format="rgb24")
                if frame_rate is None:
                    yield image
                    continue
                while target / frame_rate <= seconds - first + _EPS:  # first frame at or after k / rate
                    yield image
                    target += 1
        except av.error.FFmpegError as error:
            raise UnreadableFileError(path, f"Cannot decode video {path}: {error}") from error


def check_frame_rate(frame_rate: float | None) -> None:
    """Raise ``ValueError`` unless ``frame_rate`` is positive or None."""
    if frame_rate is not None and not frame_rate > 0:
        raise ValueError(f"frame_rate must be positive or None, got {frame_rate}")


def decode_video(path: str | Path, frame_rate: float | None = None) -> Tensor:
    """Decode a whole video with PyAV.

    Args:
        path: Video file.
        frame_rate: Resample to this many frames per second: for each time ``k / frame_rate`` the
            first decoded frame at or after it (frames repeat when upsampling). All frames if None.

    Returns:
        (T, 3, H, W) uint8 RGB.

    Raises:
        UnreadableFileError: (a ValueError) The file cannot be opened or decoded, or holds no frames.
    """
    check_frame_rate(frame_rate)
    frames = list(iter_frames(Path(path), frame_rate))
    if not frames:
        raise UnreadableFileError(path, f"Video {path} has no decodable frames")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def probe_length(path: Path, frame_rate: float | None) -> int:
    """Frames ``decode_video(path, frame_rate)`` is expected to return, from container metadata (no decoding).

    Raises:
        av.error.FFmpegError, OSError: The file cannot be opened.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = stream.frames / rate if stream.frames and rate else 0.0
        if frame_rate is None:
            return int(stream.frames) if stream.frames else round(duration * rate)
        last = duration - (1 / rate if rate else 0)  # time of the last frame
        return math.floor(last * frame_rate + _EPS) + 1 if last >= 0 else 0
