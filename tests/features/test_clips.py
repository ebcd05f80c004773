"""Training clips read from the feature store: the features of online encoding at every epoch, for strided clips
too, and an interrupted first encoding that the next run resumes."""

from __future__ import annotations

import pytest
import torch

from dinosavi.data.videos import DavisClips
from dinosavi.encoders.base import ResizeRule
from dinosavi.features.clips import StoreClips
from dinosavi.features.space import FeatureSpace, Resolution
from dinosavi.features.store import FeatureStore
from tests.conftest import count_encoder_calls
from tests.features.conftest import TRAIN


@pytest.mark.parametrize("stride", [1, 2])
def test_store_clips_match_online(tiny_synthetic, tmp_path, vit, stride):
    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=3, stride=stride, clips_per_video=2, size=(64, 64))
    space = FeatureSpace(FeatureStore(tmp_path / "store"), vit, Resolution(ResizeRule(size=(64, 64)), presize=True))
    stored = StoreClips(clips, space)
    assert len(stored) == len(clips)
    for epoch in (0, 1):
        clips.set_epoch(epoch)
        stored.set_epoch(epoch)
        for i in range(len(clips)):
            item = stored[i]
            online = vit.encode(clips[i], ResizeRule(size=(64, 64)))
            assert item["features"].dtype == torch.float32
            torch.testing.assert_close(item["features"], online.features, atol=2e-3, rtol=1e-3)  # fp16 rounding
            assert online.cls_attention is not None
            torch.testing.assert_close(item["cls_attention"], online.cls_attention, atol=1e-3, rtol=1e-3)
            assert item["frames"].dtype == torch.uint8 and item["frames"].shape[:2] == (3, 3)


def test_training_clips_from_the_store_show_their_encoding_and_resume_it_after_an_interruption(
        tiny_synthetic, tmp_path, vit, monkeypatch, capsys):
    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=3, stride=1, clips_per_video=2, size=(64, 64))
    space = FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN)
    encode = FeatureSpace.encode
    encoded: list[int] = []

    def interrupted(self, frames):
        if len(encoded) == 1:
            raise KeyboardInterrupt  # Ctrl-C while the second video is encoded
        encoded.append(len(frames))
        return encode(self, frames)

    monkeypatch.setattr(FeatureSpace, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        StoreClips(clips, space)
    assert "cache" in capsys.readouterr().out  # the progress bar of the up-front encoding
    monkeypatch.setattr(FeatureSpace, "encode", encode)
    calls = count_encoder_calls(vit, monkeypatch)
    StoreClips(clips, FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN))
    assert sum(calls) == sum(clips.lengths) - encoded[0]  # the first video's features were kept
