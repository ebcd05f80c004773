"""Clip sampling: DAVIS-layout clips, video clips at a frame rate, errors, and the skipping of unreadable files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dinosavi.data.badfiles import BadFile, UnreadableFileError
from dinosavi.data.davis import read_frames
from dinosavi.data.synthetic import SyntheticSpec, generate_synthetic
from dinosavi.data.videos import DavisClips, VideoClips, clip_frames, clip_span, clip_starts
from tests.data.conftest import square_positions, write_broken_videos, write_video


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = SyntheticSpec(num_videos=3, num_frames=12, height=64, width=96, val_videos=1, seed=1)
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "data", spec)


def test_clip_span_and_frames() -> None:
    assert clip_span(4, 2) == 7 and clip_span(4) == 4 and clip_span(1, 5) == 1
    assert list(clip_frames(3, 4, 2)) == [3, 5, 7, 9] and list(clip_frames(0, 3)) == [0, 1, 2]
    rng = np.random.default_rng(0)
    assert clip_starts(6, 4, 2, 3, rng) == [] and clip_starts(7, 4, 2, 3, rng) == [0, 0, 0]  # one valid start


def test_a_clip_longer_than_every_video_names_its_span(synth_root: Path) -> None:
    # 4 frames 4 apart span 13 frames; the synthetic videos have 12 (the frames a strided clip reads:
    # test_davis_clips_stride_and_determinism)
    with pytest.raises(ValueError, match="long enough for a clip of 13 frames"):
        DavisClips(synth_root, "train", frames_per_clip=4, stride=4)


def test_clip_starts() -> None:
    rng = np.random.default_rng(0)
    assert clip_starts(5, 4, 2, 3, rng) == []
    starts = clip_starts(103, 4, 1, 4, rng)  # 100 valid starts, one per quarter
    assert [s // 25 for s in starts] == [0, 1, 2, 3]
    assert clip_starts(10, 10, 1, 3, rng) == [0, 0, 0]
    with pytest.raises(ValueError, match="stride"):
        clip_starts(10, 2, 0, 1, rng)


def test_video_clips(video_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        clips = VideoClips(video_root, frames_per_clip=4, frame_rate=5, clips_per_video=2, size=(48, 64))
    assert "short.mp4" in caplog.text
    assert sorted(p.name for p in clips.videos) == ["one.mp4", "three.avi", "two.WEBM"]
    assert len(clips) == 6
    clip = clips[1]
    assert clip.shape == (4, 3, 48, 64) and clip.dtype == torch.uint8
    steps = np.diff(square_positions(clip))
    np.testing.assert_allclose(steps, 5, atol=1.0)
    resized = VideoClips(video_root, frames_per_clip=3, size=(24, 32))
    assert resized[0].shape == (3, 3, 24, 32)


def test_video_clips_epochs_are_deterministic(video_root: Path) -> None:
    clips = VideoClips(video_root, frames_per_clip=2, clips_per_video=3, size=(48, 64), seed=5)
    first = [clips[i] for i in range(len(clips))]
    clips.set_epoch(1)
    second = [clips[i] for i in range(len(clips))]
    assert not all(torch.equal(a, b) for a, b in zip(first, second))  # a new epoch draws new clips
    same = VideoClips(video_root, frames_per_clip=2, clips_per_video=3, size=(48, 64), seed=5)
    same.set_epoch(1)
    assert all(torch.equal(same[i], clip) for i, clip in enumerate(second))  # the seed and epoch fix them


def test_video_clips_errors(tmp_path: Path, video_root: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"empty.*\.mp4, \.webm, \.avi"):
        VideoClips(tmp_path / "empty", frames_per_clip=2)
    with pytest.raises(FileNotFoundError, match="missing"):
        VideoClips(tmp_path / "missing", frames_per_clip=2)
    with pytest.raises(ValueError, match=f"{video_root}.*long enough"):
        VideoClips(video_root, frames_per_clip=60)
    with pytest.raises(ValueError, match="frame_rate"):
        VideoClips(video_root, frames_per_clip=2, frame_rate=0)


def _start(clip: torch.Tensor, frames: torch.Tensor, stride: int) -> int:
    """The frame ``clip`` starts at among ``frames``, its frames ``stride`` apart."""
    starts = [s for s in range(len(frames)) if torch.equal(frames[s : s + len(clip) * stride : stride], clip)]
    assert len(starts) == 1, f"the clip is {len(starts)} windows of the video"
    return starts[0]


def test_davis_clips_stride_and_determinism(synth_root: Path) -> None:
    clips = DavisClips(synth_root, "train", frames_per_clip=3, stride=4, clips_per_video=2, size=(64, 96))
    assert len(clips) == 4 and clips.sequence_names == ["synth-0000", "synth-0001"]
    videos = [read_frames(sorted((synth_root / "JPEGImages" / "480p" / name).glob("*.jpg")))
              for name in clips.sequence_names]
    starts = [_start(clips[i], videos[i // 2], 4) for i in range(4)]  # clips 2, 3: the second video's
    assert all(0 <= start <= 12 - 9 for start in starts)
    fresh = DavisClips(synth_root, "train", 3, 4, 2, (64, 96))
    assert [_start(fresh[i], videos[i // 2], 4) for i in range(4)] == starts
    epochs = set()
    for epoch in range(6):
        clips.set_epoch(epoch)
        epochs.add(tuple(_start(clips[i], videos[i // 2], 4) for i in range(4)))
    assert len(epochs) > 1


def test_davis_clips_resize_and_errors(synth_root: Path) -> None:
    clip = DavisClips(synth_root, "val", frames_per_clip=2, size=(32, 40))[0]
    assert clip.shape == (2, 3, 32, 40) and clip.dtype == torch.uint8
    with pytest.raises(ValueError, match=f"{synth_root}.*long enough"):
        DavisClips(synth_root, "val", frames_per_clip=7, stride=2)


def test_davis_clips_real_sample(davis_root: Path) -> None:
    clips = DavisClips(davis_root, "val", frames_per_clip=2, stride=3)
    assert len(clips) == 4 and clips[0].shape == (2, 3, 224, 224)


@pytest.fixture
def broken_root(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "videos"
    write_video(root / "good" / "one.mp4")
    write_video(root / "good" / "two.mp4")
    return root, write_broken_videos(root / "bad")


def test_unreadable_videos_are_errors_without_skip_bad(broken_root) -> None:
    root, bad = broken_root
    with pytest.raises(UnreadableFileError, match=r"Cannot open video .*empty\.mp4"):
        VideoClips(root, frames_per_clip=3, frame_rate=8)
    bad["empty"].unlink()
    bad["truncated"].unlink()
    clips = VideoClips(root, frames_per_clip=3, frame_rate=8)
    assert clips.sources[0] == bad["garbled"]
    with pytest.raises(UnreadableFileError, match=r"Cannot decode video .*garbled\.mp4") as info:
        clips[0]
    assert info.value.path == bad["garbled"]


def test_skip_bad_drops_unopenable_videos_and_replaces_undecodable_ones(broken_root) -> None:
    root, _ = broken_root
    clips = VideoClips(root, frames_per_clip=3, frame_rate=8, clips_per_video=2, skip_bad=True)
    assert clips.num_found == 5 and len(clips) == 3 * 2  # garbled, one, two
    assert sorted(Path(s.path).name for s in clips.excluded) == ["empty.mp4", "truncated.mp4"]
    for epoch in (0, 1):
        clips.set_epoch(epoch)
        # the garbled video's clip slots are filled by the next readable video (one.mp4), same slot
        assert torch.equal(clips[0], clips[2]) and torch.equal(clips[1], clips[3])
        assert not torch.equal(clips[2], clips[3])
    skips = clips.take_skips()
    assert [(s.video, Path(s.path).name) for s in skips] == [(-1, "empty.mp4"), (-1, "truncated.mp4"),
                                                             (0, "garbled.mp4")]
    assert "Cannot decode" in skips[-1].reason and clips.take_skips() == []


def test_listed_bad_videos_are_not_read_again_and_give_the_same_clips(broken_root, monkeypatch) -> None:
    root, bad = broken_root
    found = VideoClips(root, frames_per_clip=3, frame_rate=8, clips_per_video=2, skip_bad=True)
    expected = [found[i] for i in range(len(found))]
    opened: list[str] = []
    import dinosavi.data.videos as videos

    for name in ("probe_length", "iter_frames"):
        original = getattr(videos, name)
        monkeypatch.setattr(videos, name, lambda path, rate, f=original: opened.append(path.name) or f(path, rate))
    known = {str(bad["empty"]): BadFile("cannot open", opens=False),
             str(bad["truncated"]): BadFile("cannot open", opens=False),
             str(bad["garbled"]): BadFile("cannot decode")}
    listed = VideoClips(root, frames_per_clip=3, frame_rate=8, clips_per_video=2, skip_bad=True, known_bad=known)
    assert [torch.equal(listed[i], e) for i, e in enumerate(expected)] == [True] * len(expected)
    assert "empty.mp4" not in opened and "truncated.mp4" not in opened
    assert opened.count("garbled.mp4") == 1  # its length is probed (it keeps its place), it is never decoded
    assert set(listed.bad) == {0}


def test_frame_clips_skip_a_sequence_with_a_corrupt_frame(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "davis"
    shutil.copytree(synth_root, root)
    corrupt = root / "JPEGImages" / "480p" / "synth-0000" / "00005.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated JPEG
    strict = DavisClips(root, "train", frames_per_clip=12, clips_per_video=2, size=(64, 96))
    with pytest.raises(UnreadableFileError, match=str(corrupt)):
        strict[0]
    clips = DavisClips(root, "train", frames_per_clip=12, clips_per_video=2, size=(64, 96), skip_bad=True)
    assert torch.equal(clips[0], clips[2]) and torch.equal(clips[1], clips[3])  # synth-0001 fills in
    (skip,) = clips.take_skips()
    assert (skip.video, skip.path) == (0, str(corrupt))
    listed = DavisClips(root, "train", frames_per_clip=12, clips_per_video=2, size=(64, 96), skip_bad=True,
                        known_bad={str(corrupt): BadFile(skip.reason)})
    assert set(listed.bad) == {0} and torch.equal(listed[0], clips[0])
