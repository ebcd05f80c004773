"""Video files written with PyAV for the decode and clip tests: a moving square (frame order is recoverable)
and files broken in three ways."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

CODECS = {".mp4": "libx264", ".webm": "libvpx", ".avi": "mpeg4"}


def write_video(path: Path, num_frames: int = 50, fps: int = 25) -> None:
    """A 64x48 video whose frame i shows a white 8x8 square at x = i (so order is recoverable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODECS[path.suffix.lower()], rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(num_frames):
            image = np.zeros((48, 64, 3), np.uint8)
            image[20:28, i : i + 8] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def write_broken_videos(folder: Path) -> dict[str, Path]:
    """Three broken ``.mp4`` files in ``folder``: ``truncated`` (its second half, with the index, cut off:
    it cannot be opened), ``empty`` (zero bytes) and ``garbled`` (it opens, but its frame data is
    overwritten: decoding fails at the first frame)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / ".source.mp4"
    write_video(good)
    data = good.read_bytes()
    good.unlink()
    paths = {name: folder / f"{name}.mp4" for name in ("truncated", "empty", "garbled")}
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["empty"].write_bytes(b"")
    garbled = bytearray(data)
    garbled[300:800] = b"\xff" * 500
    paths["garbled"].write_bytes(bytes(garbled))
    return paths


def square_positions(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) uint8 -> (T,) left edge of the white square, i.e. the source frame index."""
    bright = frames.float().mean(dim=1) > 128  # (T, H, W)
    columns = bright.any(dim=1).float()  # (T, W)
    return (columns * torch.arange(frames.shape[-1])).sum(-1).numpy() / columns.sum(-1).numpy() - 3.5


@pytest.fixture(scope="module")
def video_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "class_a" / "one.mp4")
    write_video(root / "class_b" / "two.WEBM")
    write_video(root / "class_b" / "deeper" / "three.avi")
    write_video(root / "class_c" / "short.mp4", num_frames=5)
    (root / "class_c" / "notes.txt").write_text("not a video")
    return root
