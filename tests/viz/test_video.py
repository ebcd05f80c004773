"""MP4 writing with PyAV: frame count and size survive a round trip, odd sizes are cropped, writes are atomic."""

import av
import numpy as np
import pytest
import torch

from dinosavi.data.davis import davis_palette
from dinosavi.viz.video import video_codec, write_overlay_video, write_video


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return codec, frames


@pytest.mark.parametrize("size", [(48, 64), (47, 65)])
def test_round_trip_keeps_count_and_even_size(tmp_path, size):
    h, w = size
    frames = [np.full((h, w, 3), 20 * t, np.uint8) for t in range(7)]
    path = write_video(tmp_path / "sub" / "clip.mp4", frames, fps=24)
    codec, decoded = _decode(path)
    assert codec == video_codec() and codec in ("h264", "mpeg4")
    assert len(decoded) == 7
    assert decoded[0].shape == (h // 2 * 2, w // 2 * 2, 3)
    means = [float(f.mean()) for f in decoded]
    assert means == sorted(means) and abs(means[-1] - 120) < 8  # frames stay in order, colours survive
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no temp file left


def test_a_fractional_rate_is_kept_exactly(tmp_path):
    """A source at 30000/1001 fps gives an MP4 at 30000/1001 fps, streamed from a generator."""
    from fractions import Fraction

    path = write_video(tmp_path / "ntsc.mp4", (np.full((32, 32, 3), t, np.uint8) for t in range(5)),
                       fps=Fraction(30000, 1001))
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


def test_failed_write_leaves_nothing(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8), np.zeros((40, 32, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "bad.mp4", frames)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", [np.zeros((32, 32, 3), np.float32)])


def test_overlay_video_paints_objects(tmp_path):
    frames = torch.full((3, 3, 32, 48), 255, dtype=torch.uint8)
    labels = np.zeros((3, 32, 48), np.uint8)
    labels[:, 8:24, 8:40] = 1  # palette colour 1 is dark red
    _, decoded = _decode(write_overlay_video(tmp_path / "o.mp4", frames, labels, davis_palette()))
    assert len(decoded) == 3
    inside, outside = decoded[1][16, 24].astype(int), decoded[1][2, 2].astype(int)
    assert outside.min() > 230 and inside[1] < 170 and inside[0] > inside[1]
