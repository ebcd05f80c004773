"""Filling the feature store: one encoding per frame and resolution, reruns that encode nothing, an interrupted
run resumed, the source groups, unreadable videos, and ``mode=cache``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dinosavi.data.badfiles import UnreadableFileError
from dinosavi.encoders.base import FrozenEncoder
from dinosavi.features.cache import SourceGroup, cache_features, davis_groups, video_groups
from dinosavi.features.digests import file_digest, video_frame_digest
from dinosavi.features.space import FeatureSpace
from dinosavi.features.store import FeatureStore
from tests.conftest import REPO_ROOT, count_encoder_calls
from tests.data.conftest import write_broken_videos, write_video
from tests.features.conftest import EVAL, TRAIN


def _spaces(store: FeatureStore, encoder: FrozenEncoder) -> list[FeatureSpace]:
    return [FeatureSpace(store, encoder, r, batch_size=4) for r in (TRAIN, EVAL)]


def test_second_run_encodes_nothing(tiny_synthetic, tmp_path, vit, monkeypatch):
    groups = davis_groups(tiny_synthetic, None)
    total = sum(len(g.paths) for g in groups)
    store = FeatureStore(tmp_path / "store")
    first = cache_features(store, _spaces(store, vit), groups, show_progress=False)
    assert (first.frames, first.encoded) == (total, 2 * total)
    calls = count_encoder_calls(vit, monkeypatch)
    reopened = FeatureStore(tmp_path / "store")
    assert len(reopened) == 2 * total
    second = cache_features(reopened, _spaces(reopened, vit), groups, show_progress=False)
    assert (second.frames, second.encoded, calls) == (total, 0, [])
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_interrupted_run_resumes(tiny_synthetic, tmp_path, vit, monkeypatch):
    groups = davis_groups(tiny_synthetic, None)
    total = sum(len(g.paths) for g in groups)
    write, written = FeatureStore.write, list[str]()

    def failing_write(self, *args, **kwargs):
        if len(written) == 3:
            raise RuntimeError("interrupted")
        written.append(args[1])
        return write(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "write", failing_write)
    store = FeatureStore(tmp_path / "store", flush_every=1e9)  # only the final flush records the shards
    with pytest.raises(RuntimeError, match="interrupted"):
        cache_features(store, _spaces(store, vit), groups, show_progress=False)
    monkeypatch.setattr(FeatureStore, "write", write)
    calls = count_encoder_calls(vit, monkeypatch)
    reopened = FeatureStore(tmp_path / "store")
    assert len(reopened) == 2 * len(groups[0].paths) + len(groups[1].paths)
    stats = cache_features(reopened, _spaces(reopened, vit), groups, show_progress=False)
    done = 2 * len(groups[0].paths) + len(groups[1].paths)
    assert stats.encoded == 2 * total - done
    assert sum(calls) == 2 * total - done
    assert len(reopened) == 2 * total


def test_cache_mode_cli(tiny_synthetic, tmp_path):
    store = tmp_path / "store"
    command = [
        sys.executable, "-m", "dinosavi", "mode=cache", "data=synthetic", f"data.root={tiny_synthetic}",
        "encoder=vit_tiny_random", f"features.store={store}", "train.input_size=[64,64]", "eval.short_side=64",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "frames/s" in done.stdout + done.stderr
    entries = json.loads((store / "manifest.json").read_text())["entries"]
    assert len(entries) == 2 * 4 * 6  # 4 videos of 6 frames, train and eval


def test_davis_groups_take_each_sequence_once(tiny_synthetic):
    everything = davis_groups(tiny_synthetic, None)  # every split file: train.txt and val.txt
    assert [g.name for g in everything] == [f"synth-{i:04d}" for i in range(4)]
    twice = davis_groups(tiny_synthetic, ["val", "train", "val"])
    assert sorted(g.name for g in twice) == [g.name for g in everything]
    assert all(len(g.paths) == 6 and not g.video for g in twice)


def test_davis_groups_without_split_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"No split files \(\*\.txt\) in {tmp_path / 'ImageSets' / '2017'}"):
        davis_groups(tmp_path, None)


def test_a_video_group_has_digests_once_its_length_is_known(tmp_path):
    write_video(tmp_path / "videos" / "b" / "two.mp4", num_frames=10)
    write_video(tmp_path / "videos" / "a" / "one.mp4", num_frames=10)
    groups = video_groups(tmp_path / "videos", 5)
    assert [(g.name, g.video, g.frame_rate) for g in groups] == [("a/one.mp4", True, 5), ("b/two.mp4", True, 5)]
    store = FeatureStore(tmp_path / "store")
    assert groups[0].digests(store) is None  # never decoded: the frame count is unknown
    source = f"{file_digest(groups[0].paths[0])}@5"
    expected = [video_frame_digest(source, 5, i) for i in range(2)]
    assert groups[0].digests(store, length=2) == expected
    assert groups[0].digests(store) == expected and store.length(source) == 2
    assert groups[0].decode().shape == (2, 3, 48, 64)  # 10 frames at 25 fps, 0.4 s at 5 fps


def test_cache_counts_frames_and_stores_video_lengths(tmp_path, vit):
    write_video(tmp_path / "videos" / "one.mp4", num_frames=10)
    store = FeatureStore(tmp_path / "store")
    groups = [SourceGroup("one", [tmp_path / "videos" / "one.mp4"], video=True, frame_rate=12.5)]
    stats = cache_features(store, [FeatureSpace(store, vit, TRAIN)], groups, show_progress=False)
    assert (stats.frames, stats.encoded, len(stats.digests[0])) == (5, 5, 5)  # 0.4 s at 12.5 fps
    reopened = FeatureStore(tmp_path / "store")
    assert groups[0].digests(reopened) == stats.digests[0]  # the length was recorded in the manifest


def test_an_unreadable_video_is_an_error_or_reported(tmp_path, vit):
    write_video(tmp_path / "videos" / "good.mp4", num_frames=10)
    bad = write_broken_videos(tmp_path / "videos")["garbled"]
    groups = [SourceGroup("garbled", [bad], video=True, frame_rate=5),
              SourceGroup("good", [tmp_path / "videos" / "good.mp4"], video=True, frame_rate=5)]
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(UnreadableFileError, match=r"Cannot decode video .*garbled\.mp4"):
        cache_features(store, [FeatureSpace(store, vit, TRAIN)], groups, show_progress=False)
    reported: list[tuple[int, Path]] = []
    stats = cache_features(store, [FeatureSpace(store, vit, TRAIN)], groups, show_progress=False,
                           on_unreadable=lambda index, error: reported.append((index, error.path)))
    assert reported == [(0, bad)]
    assert [len(d) for d in stats.digests] == [0, 2] and stats.frames == 2
