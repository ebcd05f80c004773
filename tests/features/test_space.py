"""One encoder at one resolution in the feature store: keys that follow the weights, the resolution and the file
bytes; online encoding at the resolution; lookup, write-back and the checks on what is decoded."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from dinosavi.encoders.base import ResizeRule
from dinosavi.encoders.registry import create_encoder
from dinosavi.features.cache import davis_groups
from dinosavi.features.digests import file_digest
from dinosavi.features.space import THUMBNAIL_SIDE, FeatureSpace, Resolution, StoredFrames, resolution
from dinosavi.features.store import FeatureStore
from tests.conftest import count_encoder_calls
from tests.features.conftest import EVAL, TRAIN


def test_resolutions_are_defined_once():
    train = resolution("train", (48, 64), 96, 16)
    assert train.presize and train.rule == ResizeRule(size=(48, 64))
    evaluation = resolution("eval", (48, 64), 96, 16)
    assert not evaluation.presize and evaluation.rule == ResizeRule(short_side=96, multiple_of=16)
    with pytest.raises(ValueError, match="Unknown resolution `test`"):
        resolution("test", (48, 64), 96, 16)


def test_keys_follow_weights_resolution_and_file_bytes(tiny_synthetic, tmp_path, vit):
    store = FeatureStore(tmp_path / "store")
    frame = tmp_path / "frame.jpg"
    shutil.copy(davis_groups(tiny_synthetic, ["val"])[0].paths[0], frame)
    digest = file_digest(frame)
    base = FeatureSpace(store, vit, TRAIN).keys([digest])

    os.utime(frame, (1_000_000, 1_000_000))  # mtime only: same key
    assert FeatureSpace(store, vit, TRAIN).keys([file_digest(frame)]) == base
    frame.write_bytes(frame.read_bytes() + b"\0")  # other bytes: other key
    assert FeatureSpace(store, vit, TRAIN).keys([file_digest(frame)]) != base
    assert FeatureSpace(store, vit, Resolution(ResizeRule(size=(72, 72)), presize=True)).keys([digest]) != base
    assert FeatureSpace(store, vit, Resolution(ResizeRule(size=(64, 64)))).keys([digest]) != base

    changed = create_encoder("vit_tiny_random").freeze()
    assert FeatureSpace(store, changed, TRAIN).keys([digest]) == base  # same weights, new object
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    assert FeatureSpace(store, changed, TRAIN).keys([digest]) != base


def test_presize_needs_a_fixed_size():
    with pytest.raises(ValueError, match=r"Resolution\.presize needs a fixed rule\.size, got ResizeRule\(size=None"):
        Resolution(ResizeRule(short_side=64), presize=True)


def test_presized_encoding_keeps_thumbnails(tmp_path, vit):
    space = FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN)
    assert space.names == ("features", "cls_attention", "frames")
    frames = torch.randint(0, 256, (3, 3, 96, 128), dtype=torch.uint8)
    out = space.encode(frames)
    assert out.features.shape == (3, 64, 8, 8) and out.features.dtype == torch.float32  # 64x64, patch 8
    assert out.cls_attention is not None and out.cls_attention.shape == (3, 4, 8, 8)
    assert out.frames is not None and out.frames.shape == (3, 3, 64, 64) and out.frames.dtype == torch.uint8


def test_thumbnails_have_a_long_side_of_at_most_thumbnail_side(tmp_path, vit):
    space = FeatureSpace(FeatureStore(tmp_path / "store"), vit, Resolution(ResizeRule(size=(64, 128)), presize=True))
    out = space.encode(torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8))
    assert THUMBNAIL_SIDE == 64
    assert out.frames is not None and out.frames.shape == (2, 3, 32, 64)
    assert out.features.shape == (2, 64, 8, 16)


def test_evaluation_resolution_keeps_no_frames(tmp_path, vit):
    space = FeatureSpace(FeatureStore(tmp_path / "store"), vit, EVAL)
    assert space.names == ("features", "cls_attention")
    out = space.encode(torch.randint(0, 256, (2, 3, 64, 84), dtype=torch.uint8))
    assert out.frames is None
    assert out.features.shape == (2, 64, 8, 10)  # short side 64, long side 84 floored to 80


def test_get_encodes_once_then_reads(tiny_synthetic, tmp_path, vit, monkeypatch):
    group = davis_groups(tiny_synthetic, ["val"])[0]
    digests = [file_digest(p) for p in group.paths]
    space = FeatureSpace(FeatureStore(tmp_path / "store", dtype="fp32"), vit, TRAIN)
    assert space.read(digests) is None
    first, computed = space.get(group.name, digests, group.decode)
    assert computed and first.features.shape == (6, 64, 8, 8)
    calls = count_encoder_calls(vit, monkeypatch)
    again, computed = space.get(group.name, digests, group.decode)
    assert not computed and calls == []
    assert torch.equal(again.features, first.features) and again.frames is not None
    assert first.frames is not None and torch.equal(again.frames, first.frames)


def test_get_without_write_back_stores_nothing(tiny_synthetic, tmp_path, vit):
    group = davis_groups(tiny_synthetic, ["val"])[0]
    digests = [file_digest(p) for p in group.paths]
    store = FeatureStore(tmp_path / "store")
    _, computed = FeatureSpace(store, vit, TRAIN).get(group.name, digests, group.decode, write_back=False)
    assert computed and len(store) == 0


def test_decoded_frames_must_match_the_digests(tmp_path, vit):
    space = FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN)
    frames = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    with pytest.raises(ValueError, match="clip-7: decoded 2 frames, expected 3"):
        space.get("clip-7", ["a", "b", "c"], lambda: frames)


def test_write_keeps_what_is_given(tmp_path, vit):
    space = FeatureSpace(FeatureStore(tmp_path / "store", dtype="fp32"), vit, EVAL)
    features = torch.randn(2, 64, 3, 4)
    space.write("group", ["x", "y"], StoredFrames(features))
    stored = space.read(["y", "x"])
    assert stored is not None and stored.cls_attention is None and stored.frames is None
    assert torch.equal(stored.features, features.flip(0))
