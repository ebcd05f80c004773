"""Features encoded once and held in memory: the same clips and features as online encoding, CLS attention
kept when the encoder has it, the documented shapes."""

import torch

from dinosavi.data.videos import DavisClips
from dinosavi.encoders.base import ResizeRule
from dinosavi.encoders.registry import create_encoder
from dinosavi.features.memory import FeatureClips


def test_in_memory_features_match_online(tiny_synthetic):
    encoder = create_encoder("vit_tiny_random").freeze()
    rule = ResizeRule(size=(64, 64))
    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=2, stride=2, clips_per_video=2, size=(64, 64))
    memory = FeatureClips(clips, encoder, rule, batch_size=4)
    assert len(memory) == len(clips)
    for epoch in (0, 1):
        clips.set_epoch(epoch)
        memory.set_epoch(epoch)
        for i in range(len(clips)):
            frames = clips[i]
            item = memory[i]
            assert torch.equal(item["frames"], frames)
            online = encoder.encode(frames, rule).features
            # fp16 storage is the only difference
            torch.testing.assert_close(item["features"], online, atol=2e-3, rtol=1e-3)


def test_in_memory_features_keep_cls_attention(tiny_synthetic):
    encoder = create_encoder("vit_tiny_random").freeze()
    rule = ResizeRule(size=(64, 64))
    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=2, stride=1, clips_per_video=1, size=(64, 64))
    item = FeatureClips(clips, encoder, rule, batch_size=4)[0]
    online = encoder.encode(item["frames"], rule).cls_attention
    assert online is not None
    torch.testing.assert_close(item["cls_attention"], online, atol=2e-3, rtol=1e-3)


def test_items_have_the_documented_shapes_and_no_cls_attention_without_a_cls_token(tiny_synthetic):
    encoder = create_encoder("efficientnet_lite0", stride=16).freeze()
    assert encoder.num_heads is None
    rule = ResizeRule(size=(64, 64))
    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=3, stride=2, clips_per_video=1, size=(64, 64))
    memory = FeatureClips(clips, encoder, rule, batch_size=4)
    item = memory[0]
    assert set(item) == {"frames", "features"}
    assert item["frames"].shape == (3, 3, 64, 64) and item["frames"].dtype == torch.uint8
    assert item["features"].shape == (3, encoder.feature_dim, 4, 4) and item["features"].dtype == torch.float32
    assert torch.equal(item["frames"], clips[0])
