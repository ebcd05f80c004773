"""Video files: finding them, decoding them with PyAV in order, resampling to a frame rate by presentation
time, probing their length without decoding, and the errors that name an unreadable file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from dinosavi.data.badfiles import UnreadableFileError
from dinosavi.data.decode import check_frame_rate, decode_video, find_videos, iter_frames, probe_length
from tests.data.conftest import square_positions, write_broken_videos


@pytest.mark.parametrize("name", ["class_a/one.mp4", "class_b/two.WEBM", "class_b/deeper/three.avi"])
def test_decode_video_order_and_resampling(video_root: Path, name: str) -> None:
    path = video_root / name
    frames = decode_video(path)
    assert frames.shape == (50, 3, 48, 64) and frames.dtype == torch.uint8
    np.testing.assert_allclose(square_positions(frames), np.arange(50), atol=1.0)
    slow = decode_video(path, frame_rate=5)
    assert slow.shape[0] == 10
    np.testing.assert_allclose(square_positions(slow), np.arange(0, 50, 5), atol=1.0)
    fast = decode_video(path, frame_rate=50)  # upsampling repeats frames
    np.testing.assert_allclose(square_positions(fast), np.arange(fast.shape[0]) // 2, atol=1.0)
    for rate in (None, 5.0, 12.5, 50.0):
        assert probe_length(path, rate) == decode_video(path, rate).shape[0]


def test_find_videos_is_recursive_case_insensitive_and_sorted(video_root: Path) -> None:
    found = [p.relative_to(video_root).as_posix() for p in find_videos(video_root)]
    assert found == ["class_a/one.mp4", "class_b/deeper/three.avi", "class_b/two.WEBM", "class_c/short.mp4"]


def test_find_videos_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"Video folder not found: {tmp_path / 'missing'}"):
        find_videos(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(FileNotFoundError, match=rf"No video files in {tmp_path} .*\.mp4, \.webm, \.avi"):
        find_videos(tmp_path)


def test_short_video_resampled_by_presentation_time(video_root: Path) -> None:
    """5 frames at 25 fps, at t = 0, 0.04, ..., 0.16 s: at 12.5 fps the frames at 0, 0.08 and 0.16 s; at 5 fps
    only t = 0 (the next time, 0.2 s, is past the last frame)."""
    path = video_root / "class_c" / "short.mp4"
    np.testing.assert_allclose(square_positions(decode_video(path, 12.5)), [0, 2, 4], atol=1.0)
    assert decode_video(path, 5).shape[0] == probe_length(path, 5) == 1
    assert probe_length(path, None) == 5


def test_iter_frames_yields_the_frames_of_decode_video(video_root: Path) -> None:
    path = video_root / "class_a" / "one.mp4"
    frames = list(iter_frames(path, 5))
    assert len(frames) == 10
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert torch.equal(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), decode_video(path, 5))


@pytest.mark.parametrize("rate", [0, -2.5])
def test_frame_rate_must_be_positive(rate: float, video_root: Path) -> None:
    with pytest.raises(ValueError, match=f"frame_rate must be positive or None, got {rate}"):
        check_frame_rate(rate)
    with pytest.raises(ValueError, match=f"got {rate}"):
        decode_video(video_root / "class_a" / "one.mp4", rate)
    check_frame_rate(None)
    check_frame_rate(0.5)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    bad = write_broken_videos(tmp_path)
    for name in ("empty", "truncated"):
        with pytest.raises(UnreadableFileError, match=rf"Cannot open video .*{name}\.mp4") as info:
            decode_video(bad[name])
        assert info.value.path == bad[name]
    with pytest.raises(UnreadableFileError, match=r"Cannot decode video .*garbled\.mp4") as info:
        decode_video(bad["garbled"])
    assert info.value.path == bad["garbled"]
    with pytest.raises((av.error.FFmpegError, OSError)):
        probe_length(bad["empty"], None)


def test_a_file_without_a_video_stream_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(UnreadableFileError, match=r"sound\.wav has no video stream"):
        decode_video(path)
    assert probe_length(path, None) == 0

