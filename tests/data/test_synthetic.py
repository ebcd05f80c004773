"""Synthetic videos: determinism, exact occluding masks, DAVIS layout and atomic generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dinosavi.data.davis import DavisDataset
from dinosavi.data.synthetic import (
    MIN_VISIBLE_FRACTION,
    SyntheticSpec,
    _render,
    ensure_synthetic,
    generate_synthetic,
    render_video,
)

SMALL = SyntheticSpec(num_videos=3, num_frames=6, height=64, width=96, val_videos=1, seed=3)


def test_render_shapes_and_determinism() -> None:
    spec = SyntheticSpec(num_frames=5, height=48, width=64)
    frames, masks = render_video(np.random.default_rng(7), spec)
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    assert masks.shape == (5, 48, 64) and masks.dtype == np.uint8
    again_frames, again_masks = render_video(np.random.default_rng(7), spec)
    assert frames.tobytes() == again_frames.tobytes() and masks.tobytes() == again_masks.tobytes()
    other_frames, other_masks = render_video(np.random.default_rng(8), spec)
    assert frames.tobytes() != other_frames.tobytes() and masks.tobytes() != other_masks.tobytes()


def test_masks_exact_and_objects_occlude() -> None:
    spec = SyntheticSpec(num_frames=12, height=96, width=128)
    occluded = False
    for seed in range(6):
        _, masks, full = _render(np.random.default_rng(seed), spec, amodal=True)
        assert full is not None
        count = full.shape[1]
        assert 2 <= count <= 6
        # frame 0 shows every object, each large enough for a stride-8 encoder
        areas = np.bincount(masks[0].ravel(), minlength=count + 1)
        assert areas.size == count + 1 and areas[1:].min() >= MIN_VISIBLE_FRACTION * masks[0].size
        # the mask is the z-ordered composite of the unoccluded objects: later ids cover earlier ones
        composite = np.zeros_like(masks)
        for k in range(count):
            composite[full[:, k]] = k + 1
        np.testing.assert_array_equal(masks, composite)
        for k in range(count - 1):
            lost = full[:, k] & (masks != k + 1)
            assert (masks[lost] > k + 1).all()
            occluded |= bool(lost.any())
    assert occluded


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="min_objects"):
        SyntheticSpec(min_objects=5, max_objects=3)
    with pytest.raises(ValueError, match="val_videos"):
        SyntheticSpec(num_videos=4, val_videos=4)


def test_generate_writes_readable_davis_layout(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path / "synth", SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no temp sibling left
    assert json.loads((root / "spec.json").read_text())["seed"] == 3
    train, val = DavisDataset(root, split="train"), DavisDataset(root, split="val")
    assert train.sequence_names == ["synth-0000", "synth-0001"] and val.sequence_names == ["synth-0002"]
    sequence = val[0]
    assert sequence.frames.shape == (6, 3, 64, 96)
    assert sequence.labels is not None and sequence.labels.shape == (6, 64, 96)
    assert tuple(sequence.palette[1]) == (128, 0, 0)
    seeds = np.random.SeedSequence(SMALL.seed).spawn(SMALL.num_videos)
    _, masks = render_video(np.random.default_rng(seeds[2]), SMALL)
    np.testing.assert_array_equal(sequence.labels.numpy(), masks)  # PNG masks are lossless


def test_generate_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="synth"):
        generate_synthetic(tmp_path / "synth", SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]


def test_ensure_generates_once_and_detects_mismatch(tmp_path: Path) -> None:
    root = ensure_synthetic(tmp_path / "synth", SMALL)
    stamp = (root / "spec.json").stat().st_mtime_ns
    assert ensure_synthetic(root, SMALL) == root and (root / "spec.json").stat().st_mtime_ns == stamp
    other = SyntheticSpec(num_videos=3, num_frames=7, height=64, width=96, val_videos=1, seed=4)
    with pytest.raises(ValueError, match=r"synth.*num_frames.*seed.*data\.root"):
        ensure_synthetic(root, other)


def test_ensure_rejects_non_davis_folder(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"train\.txt"):
        ensure_synthetic(tmp_path / "junk", SMALL)
