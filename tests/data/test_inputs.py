"""What ``input=`` names (a video file, a folder of frames, a folder of videos) and its frames, streamed after
the frame-rate cap, the frame range and the resize; the errors name the file."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinosavi.data.badfiles import UnreadableFileError
from dinosavi.data.inputs import StreamOptions, VideoSource, find_sources, resized_size, stream_frames
from dinosavi.viz.video import write_video

NUM_FRAMES = 10


def _frame(t: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.full((*size, 3), 20 * t + 10, np.uint8)


def _index(frame: np.ndarray) -> int:
    """Which ``_frame(t)`` a decoded (lossy) frame is."""
    return round((float(frame.mean()) - 10) / 20)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 frames of 48x64 at 24 fps, frame ``t`` of intensity ``20 t + 10``."""
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", [_frame(t) for t in range(NUM_FRAMES)], fps=24)


def _frames_folder(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for t, name in enumerate(names):
        Image.fromarray(_frame(t)).save(folder / name)
    return folder


def test_a_video_file_is_one_source(video):
    (source,) = find_sources(video)
    assert source == VideoSource("clip", video) and source.is_file
    assert source.size() == (48, 64) and source.native_rate(24.0) == 24


def test_a_folder_of_frames_is_one_video_in_natural_order(tmp_path):
    folder = _frames_folder(tmp_path / "walk", ["frame10.png", "frame2.jpg", "frame1.png"])
    (tmp_path / "walk" / "notes.txt").write_text("not a frame")
    (source,) = find_sources(folder)
    assert source.name == "walk" and not source.is_file
    assert [p.name for p in source.frame_files] == ["frame1.png", "frame2.jpg", "frame10.png"]
    assert source.native_rate(12.5) == Fraction(25, 2)


def test_a_folder_of_videos_is_searched_recursively(video, tmp_path):
    (tmp_path / "cats").mkdir()
    shutil.copy(video, tmp_path / "cats" / "tom.MOV")
    shutil.copy(video, tmp_path / "b.mkv")
    (tmp_path / "readme.md").write_text("not a video")
    sources = find_sources(tmp_path)
    assert [(s.name, s.path.name) for s in sources] == [("b", "b.mkv"), ("cats-tom", "tom.MOV")]


@pytest.mark.parametrize(("name", "error", "pattern"), [
    ("missing.mp4", FileNotFoundError, r"input=.*missing\.mp4 does not exist; expected a video file"),
    ("notes.txt", ValueError, r"input=.*notes\.txt is not a video file"),
    ("", FileNotFoundError, r"input=.* holds no frames and no videos"),
])
def test_what_is_not_a_video_is_named(tmp_path, name, error, pattern):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(error, match=pattern):
        find_sources(tmp_path / name)


def test_two_videos_for_one_output_folder_is_an_error(video, tmp_path):
    shutil.copy(video, tmp_path / "x.mp4")
    shutil.copy(video, tmp_path / "x.webm")
    with pytest.raises(ValueError, match=r"x\.mp4 and .*x\.webm would both write to `x/`"):
        find_sources(tmp_path)
    frames = _frames_folder(tmp_path / "frames", ["00000.jpg", "00000.png"])
    with pytest.raises(ValueError, match=r"would both write `00000\.png`"):
        find_sources(frames)


def test_a_video_streams_every_frame_by_default(video):
    stream = stream_frames(VideoSource("clip", video), StreamOptions())
    frames = list(stream.frames)
    assert stream.rate == 24 and stream.size == stream.source_size == (48, 64)
    assert stream.length == NUM_FRAMES
    assert [n for n, _ in frames] == [f"{t:05d}" for t in range(NUM_FRAMES)]
    assert [_index(f) for _, f in frames] == list(range(NUM_FRAMES))


@pytest.mark.parametrize(("options", "rate", "names", "indices"), [
    (StreamOptions(max_fps=12), 12, ["00000", "00001", "00002", "00003", "00004"], [0, 2, 4, 6, 8]),
    (StreamOptions(max_fps=30), 24, [f"{t:05d}" for t in range(NUM_FRAMES)], list(range(NUM_FRAMES))),
    (StreamOptions(start=2, stop=5), 24, ["00002", "00003", "00004"], [2, 3, 4]),
    (StreamOptions(max_fps=12, start=1, stop=3), 12, ["00001", "00002"], [2, 4]),
    (StreamOptions(start=8), 24, ["00008", "00009"], [8, 9]),
])
def test_frame_rate_cap_and_range(video, options, rate, names, indices):
    stream = stream_frames(VideoSource("clip", video), options)
    frames = list(stream.frames)
    assert stream.rate == rate
    assert [n for n, _ in frames] == names and stream.length == len(names)
    assert [_index(f) for _, f in frames] == indices


def test_short_side_resizes_the_frames(video, tmp_path):
    stream = stream_frames(VideoSource("clip", video), StreamOptions(short_side=24))
    assert stream.size == (24, 32) and stream.source_size == (48, 64)
    assert all(f.shape == (24, 32, 3) for _, f in stream.frames)
    assert resized_size(480, 854, 240) == (240, 427) and resized_size(854, 480, 240) == (427, 240)
    assert resized_size(480, 854, None) == (480, 854)


def test_a_folder_of_frames_is_capped_from_its_frame_rate(tmp_path):
    folder = _frames_folder(tmp_path / "seq", [f"{t:05d}.png" for t in range(NUM_FRAMES)])
    (source,) = find_sources(folder)
    stream = stream_frames(source, StreamOptions(max_fps=8, folder_fps=24))
    frames = list(stream.frames)
    assert stream.rate == 8 and stream.length == len(frames)
    assert [n for n, _ in frames] == ["00000", "00003", "00006", "00009"]
    assert [_index(f) for _, f in frames] == [0, 3, 6, 9]  # PNG: exact


def test_frames_are_read_lazily_and_a_bad_frame_is_named(tmp_path):
    folder = _frames_folder(tmp_path / "seq", [f"{t:05d}.png" for t in range(4)])
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(folder / "00002.png")
    (folder / "00003.png").write_bytes(b"not a png")
    (source,) = find_sources(folder)
    stream = stream_frames(source, StreamOptions())  # nothing is decoded yet
    assert [next(stream.frames)[0] for _ in range(2)] == ["00000", "00001"]
    with pytest.raises(UnreadableFileError, match=r"Frame .*00002\.png has size 64x40 \(WxH\); expected 64x48"):
        next(stream.frames)


@pytest.mark.parametrize(("options", "pattern"), [
    ({"max_fps": 0}, r"segment\.max_fps must be positive"),
    ({"start": 3, "stop": 3}, r"segment\.start=3, segment\.stop=3: expected 0 <= start < stop"),
    ({"start": -1}, r"segment\.start=-1"),
    ({"short_side": 0}, r"segment\.short_side must be"),
    ({"folder_fps": 0}, r"segment\.folder_fps must be positive"),
])
def test_bad_options_name_the_key(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        StreamOptions(**options)


def test_an_unreadable_video_is_named(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    (source,) = find_sources(bad)
    with pytest.raises(UnreadableFileError, match=r"Cannot open video .*broken\.mp4"):
        stream_frames(source, StreamOptions())
