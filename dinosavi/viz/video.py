"""MP4 videos of frames and of segmentation overlays, written with PyAV.

H.264 when this PyAV build has an encoder for it, else MPEG-4 part 2; yuv420p, so frames are cropped to
even sizes. Files are written to a temporary name in the destination folder, then renamed.

Shapes: ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import numpy as np
from torch import Tensor

from dinosavi.atomic import atomic_path
from dinosavi.viz.overlay import overlay

__all__ = ["video_codec", "write_overlay_video", "write_video"]

DAVIS_FPS = 24


@cache
def video_codec() -> str:
    """``h264`` when PyAV can encode it, else ``mpeg4``."""
    for name in ("h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
        except ValueError:  # av.codec.codec.UnknownCodecError
            continue
        return name
    raise RuntimeError("this PyAV build can encode neither h264 nor mpeg4; reinstall `av` from PyPI")


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int | Fraction = DAVIS_FPS) -> Path:
    """Encode RGB frames as an MP4, atomically.

    Args:
        path: destination ``.mp4``; its folder is created.
        frames: ``(H, W, 3)`` uint8 RGB frames of one size; odd sizes are cropped by one pixel. A generator
            is encoded as it yields, so a long video is never held in memory.
        fps: frames per second (a ``Fraction`` such as 30000/1001 keeps a source's exact rate).

    Returns:
        The written path.

    Raises:
        ValueError: no frames, a frame that is not ``(H, W, 3)`` uint8, or frames of different sizes.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        count = 0
        with av.open(tmp, mode="w", format="mp4") as container:
            stream: av.video.stream.VideoStream | None = None
            size: tuple[int, int] = (0, 0)
            for frame in frames:
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise ValueError(f"write_video({path}): expected (H, W, 3) uint8 frames, got "
                                     f"{frame.shape} {frame.dtype}")
                if stream is None:
                    size = (frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2)
                    if min(size) == 0:
                        raise ValueError(f"write_video({path}): frame {frame.shape[:2]} is too small")
                    added = container.add_stream(video_codec(), rate=fps)
                    assert isinstance(added, av.video.stream.VideoStream)
                    stream = added
                    stream.height, stream.width = size
                    stream.pix_fmt = "yuv420p"
                elif frame.shape[0] // 2 * 2 != size[0] or frame.shape[1] // 2 * 2 != size[1]:
                    raise ValueError(f"write_video({path}): frame {count} is {frame.shape[:2]}, the first {size}")
                image = np.ascontiguousarray(frame[: size[0], : size[1]])
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"write_video({path}): no frames")
            for packet in stream.encode():
                container.mux(packet)
    return path


def write_overlay_video(
    path: str | Path, frames: Tensor, labels: np.ndarray, palette: np.ndarray, fps: int = DAVIS_FPS
) -> Path:
    """An MP4 of ``labels`` blended over ``frames`` (see :func:`dinosavi.viz.overlay.overlay`).

    Args:
        path: destination ``.mp4``.
        frames: ``(T, 3, H, W)`` uint8 RGB.
        labels: ``(T, H, W)`` integer ids.
        palette: ``(256, 3)`` uint8 colours.
        fps: frames per second.
    """
    if len(frames) != len(labels):
        raise ValueError(f"write_overlay_video({path}): {len(frames)} frames but {len(labels)} label maps")
    images = frames.permute(0, 2, 3, 1).numpy()
    return write_video(path, (overlay(images[t], labels[t], palette) for t in range(len(labels))), fps)
