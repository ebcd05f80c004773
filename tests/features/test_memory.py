"""Features held in memory: nothing encoded up front, each frame encoded once when first drawn (on its own,
so the order of draws changes nothing), the same features as online encoding, CLS attention kept when the
encoder has it, the documented shapes."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from dinosavi.data.videos import DavisClips
from dinosavi.encoders.base import ResizeRule
from dinosavi.encoders.registry import create_encoder
from dinosavi.features.memory import FeatureClips
from tests.conftest import count_encoder_calls

RULE = ResizeRule(size=(64, 64))


def _clips(root, frames_per_clip: int = 2, stride: int = 2, clips_per_video: int = 2) -> DavisClips:
    return DavisClips(root, "train", frames_per_clip=frames_per_clip, stride=stride, clips_per_video=clips_per_video,
                      size=(64, 64))


def _batch(memory: FeatureClips, indices: list[int]) -> dict[str, torch.Tensor]:
    return memory.prepare(default_collate([memory[i] for i in indices]))


def test_in_memory_features_match_online(tiny_synthetic):
    encoder = create_encoder("vit_tiny_random").freeze()
    clips = _clips(tiny_synthetic)
    memory = FeatureClips(clips, encoder, RULE)
    assert len(memory) == len(clips)
    for epoch in (0, 1):
        clips.set_epoch(epoch)
        memory.set_epoch(epoch)
        for i in range(len(clips)):
            frames = clips[i]
            item = _batch(memory, [i])
            assert torch.equal(item["frames"][0], frames)
            online = encoder.encode(frames, RULE).features
            # fp16 storage is the only difference
            torch.testing.assert_close(item["features"][0], online, atol=2e-3, rtol=1e-3)


def test_nothing_is_encoded_up_front_and_each_frame_once(tiny_synthetic, monkeypatch):
    """Training starts at once: building encodes nothing; a batch encodes only the frames no batch drew before."""
    encoder = create_encoder("vit_tiny_random").freeze()
    calls = count_encoder_calls(encoder, monkeypatch)
    memory = FeatureClips(_clips(tiny_synthetic, frames_per_clip=3, stride=1, clips_per_video=2), encoder, RULE)
    assert calls == []
    _batch(memory, [0, 1])  # two clips of one 6-frame video: 3 + 3 frames, some shared
    first = sum(calls)
    assert 3 <= first <= 6 and set(calls) == {1}  # one frame per forward pass
    _batch(memory, [0, 1])
    assert sum(calls) == first  # read from memory
    for epoch in range(5):
        memory.set_epoch(epoch)
        _batch(memory, list(range(len(memory))))
    assert sum(calls) == len(memory.features) <= sum(memory.lengths)  # never a frame twice


def test_the_order_of_draws_does_not_change_the_features(tiny_synthetic):
    encoder = create_encoder("vit_tiny_random").freeze()
    ahead, behind = (FeatureClips(_clips(tiny_synthetic, 3, 1), encoder, RULE) for _ in range(2))
    order = list(range(len(ahead)))
    first = _batch(ahead, order)
    for i in reversed(order):
        _batch(behind, [i])
    assert torch.equal(_batch(behind, order)["features"], first["features"])


def test_in_memory_features_keep_cls_attention(tiny_synthetic):
    encoder = create_encoder("vit_tiny_random").freeze()
    item = _batch(FeatureClips(_clips(tiny_synthetic, 2, 1, 1), encoder, RULE), [0])
    online = encoder.encode(item["frames"][0], RULE).cls_attention
    assert online is not None
    torch.testing.assert_close(item["cls_attention"][0], online, atol=2e-3, rtol=1e-3)


def test_items_have_the_documented_shapes_and_no_cls_attention_without_a_cls_token(tiny_synthetic):
    encoder = create_encoder("efficientnet_lite0", stride=16).freeze()
    assert encoder.num_heads is None
    clips = _clips(tiny_synthetic, 3, 2, 1)
    memory = FeatureClips(clips, encoder, RULE)
    item = memory[0]
    assert set(item) == {"frames", "video", "index"} and item["index"].tolist() in ([0, 2, 4], [1, 3, 5])
    batch = _batch(memory, [0, 1])
    assert set(batch) == {"frames", "features"}
    assert batch["frames"].shape == (2, 3, 3, 64, 64) and batch["frames"].dtype == torch.uint8
    assert batch["features"].shape == (2, 3, encoder.feature_dim, 4, 4) and batch["features"].dtype == torch.float32
    assert torch.equal(batch["frames"][0], clips[0])
