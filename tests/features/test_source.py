"""The one place that decides where features come from: the store, or the encoder now."""

from __future__ import annotations

import torch

from dinosavi.encoders.registry import create_encoder
from dinosavi.features.cache import davis_groups
from dinosavi.features.source import FeatureSource, training_clips
from dinosavi.features.space import resolution
from dinosavi.features.store import FeatureStore
from tests.conftest import count_encoder_calls


def test_a_batch_of_raw_clips_is_encoded_and_a_stored_batch_passed_on():
    encoder = create_encoder("efficientnet_lite0", stride=16).freeze()
    source = FeatureSource(encoder, resolution("train", (32, 48), None, 16))
    clips = torch.randint(0, 255, (2, 3, 3, 32, 48), dtype=torch.uint8)
    frames, features, attention = source.batch(clips, torch.device("cpu"))
    assert frames is clips and features.shape == (2, 3, encoder.feature_dim, 2, 3) and attention is None
    assert features.requires_grad is False and features.is_inference() is False  # usable by autograd
    stored = {"frames": clips, "features": features}
    again, passed, none = source.batch(stored, torch.device("cpu"))
    assert again is clips and torch.equal(passed, features) and none is None


def test_training_clips_are_the_raw_clips_without_a_store_or_memory(tiny_synthetic):
    from dinosavi.data.videos import DavisClips

    clips = DavisClips(tiny_synthetic, "train", frames_per_clip=2, size=(32, 48))
    encoder = create_encoder("efficientnet_lite0", stride=16).freeze()
    assert training_clips(clips, FeatureSource(encoder, resolution("train", (32, 48), None, 16))) is clips


def test_eval_features_match_online_and_are_reused(tiny_synthetic, tmp_path, monkeypatch):
    encoder = create_encoder("efficientnet_lite0").freeze()
    groups = davis_groups(tiny_synthetic, ["val"])
    frames = groups[0].decode()
    res = resolution("eval", (64, 64), 64, encoder.patch_size)
    online = torch.stack(list(FeatureSource(encoder, res, 4).features(frames)))
    stored = FeatureSource.create(encoder, res, 4, FeatureStore(tmp_path / "store"))
    first = torch.stack(list(stored.features(frames, groups[0].paths, groups[0].name)))
    calls = count_encoder_calls(encoder, monkeypatch)
    second = torch.stack(list(stored.features(frames, groups[0].paths, groups[0].name)))
    assert calls == []  # read from the store
    torch.testing.assert_close(first, online)
    torch.testing.assert_close(second, online, atol=2e-3, rtol=1e-3)
    assert not torch.equal(second, online)  # really the fp16 copy


def test_eval_cls_attention_online_and_from_the_store(tiny_synthetic, tmp_path):
    encoder = create_encoder("vit_tiny_random").freeze()
    groups = davis_groups(tiny_synthetic, ["val"])
    frames = groups[0].decode()
    res = resolution("eval", (64, 64), 64, encoder.patch_size)
    reference = encoder.encode(frames, res.rule, 4)
    assert reference.cls_attention is not None
    online = list(FeatureSource(encoder, res, 3).frames(frames))  # chunks of 3: frames split across encode calls
    source = FeatureSource.create(encoder, res, 4, FeatureStore(tmp_path / "store"))
    list(source.frames(frames, groups[0].paths, groups[0].name))
    stored = list(source.frames(frames, groups[0].paths, groups[0].name))
    assert len(online) == len(stored) == len(frames)
    for (f_on, a_on), (f_st, a_st), a_ref in zip(online, stored, reference.cls_attention):
        assert a_on is not None and a_st is not None
        torch.testing.assert_close(a_on, a_ref)
        torch.testing.assert_close(a_st, a_ref, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(f_st, f_on, atol=2e-3, rtol=1e-3)


def test_a_stream_is_read_a_chunk_at_a_time():
    encoder = create_encoder("efficientnet_lite0", stride=8).freeze()
    pulled = []

    def frames():
        for t in range(5):
            pulled.append(t)
            yield torch.full((3, 32, 40), 10 * t, dtype=torch.uint8)

    source = FeatureSource(encoder, resolution("eval", (32, 40), 32, 8))
    stream = source.stream(frames(), chunk=2)
    features, attention = next(stream)
    assert pulled == [0, 1] and features.shape == (encoder.feature_dim, 4, 5) and attention is None
    assert len(list(stream)) == 4 and pulled == [0, 1, 2, 3, 4]
