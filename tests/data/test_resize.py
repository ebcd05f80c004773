"""The one uint8 frame resize: what training clips are made with, and what the feature store presizes with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dinosavi.data.davis import read_frames
from dinosavi.data.resize import resize_frames
from dinosavi.data.videos import DavisClips


@pytest.mark.parametrize("size", [(32, 40), (96, 64), (7, 9)])
def test_resize_frames_is_antialiased_bilinear_uint8(size: tuple[int, int]) -> None:
    frames = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    resized = resize_frames(frames, size)
    assert resized.shape == (2, 3, *size) and resized.dtype == torch.uint8
    expected = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    assert (resized.float() - expected).abs().max() <= 1  # uint8 rounding


def test_resize_frames_keeps_frames_at_their_size() -> None:
    frames = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    assert resize_frames(frames, (48, 64)) is frames


def test_training_clips_are_resized_frames(tiny_synthetic: Path) -> None:
    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=6, size=(32, 48))
    paths = sorted((tiny_synthetic / "JPEGImages" / "480p" / clips.sequence_names[0]).glob("*.jpg"))
    assert torch.equal(clips[0], resize_frames(read_frames(paths), (32, 48)))
