"""The feature store: exact fp32 rows, corruption found by checksum and recomputed, failed writes, training from
the store, and skipping a sequence with a corrupt frame."""

from __future__ import annotations

import errno
import logging
import shutil

import pytest
import torch
from torch.utils.data import default_collate

from dinosavi.data.videos import DavisClips
from dinosavi.encoders.base import ResizeRule
from dinosavi.features.cache import cache_features, davis_groups
from dinosavi.features.clips import StoreClips
from dinosavi.features.digests import file_digest
from dinosavi.features.space import FeatureSpace
from dinosavi.features.store import FeatureStore
from tests.conftest import count_encoder_calls
from tests.features.conftest import EVAL, TRAIN


def test_fp32_store_is_exact(tiny_synthetic, tmp_path, vit):
    group = davis_groups(tiny_synthetic, ["val"])[0]
    space = FeatureSpace(FeatureStore(tmp_path / "store", dtype="fp32"), vit, EVAL)
    online, computed = space.get(group.name, [file_digest(p) for p in group.paths], group.decode)
    stored = space.read([file_digest(p) for p in group.paths])
    assert computed and stored is not None
    assert torch.equal(stored.features, online.features)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_shard_is_reported_and_recomputed(damage, tiny_synthetic, tmp_path, vit, monkeypatch, caplog):
    groups = davis_groups(tiny_synthetic, ["val"])
    store = FeatureStore(tmp_path / "store")
    space = FeatureSpace(store, vit, TRAIN)
    digests = [file_digest(p) for p in groups[0].paths]
    reference, _ = space.get(groups[0].name, digests, groups[0].decode)
    (shard,) = (tmp_path / "store" / "shards").rglob("*.safetensors")
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[-100:-90] = bytes(b ^ 0xFF for b in data[-100:-90])
    else:
        data = data[: len(data) - 5000]
    shard.write_bytes(bytes(data))

    calls = count_encoder_calls(vit, monkeypatch)
    reopened = FeatureStore(tmp_path / "store")
    with caplog.at_level(logging.WARNING, logger="dinosavi.features.store"):
        stats = cache_features(reopened, [FeatureSpace(reopened, vit, TRAIN)], groups, show_progress=False)
    assert str(shard) in caplog.text and "corrupt" in caplog.text
    assert stats.encoded == len(digests) and sum(calls) == len(digests)
    repaired = FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN).read(digests)
    assert repaired is not None
    torch.testing.assert_close(repaired.features, reference.features, atol=2e-3, rtol=1e-3)


def test_one_flipped_byte_anywhere_in_the_tensor_data_is_caught(tiny_synthetic, tmp_path, vit, caplog):
    group = davis_groups(tiny_synthetic, ["val"])[0]
    digests = [file_digest(p) for p in group.paths]
    FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN).get(group.name, digests, group.decode)
    (shard,) = (tmp_path / "store" / "shards").rglob("*.safetensors")
    clean = shard.read_bytes()
    start = 8 + int.from_bytes(clean[:8], "little")
    positions = sorted({*range(start, len(clean), max(1, (len(clean) - start) // 61)), len(clean) - 1})
    assert len(positions) > 60
    for position in positions:
        damaged = bytearray(clean)
        damaged[position] ^= 0x01
        shard.write_bytes(bytes(damaged))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dinosavi.features.store"):
            assert FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN).read(digests) is None, position
        assert str(shard) in caplog.text and "checksum mismatch" in caplog.text
    shard.write_bytes(clean)
    assert FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN).read(digests) is not None


def test_failed_writes_keep_what_was_stored(tiny_synthetic, tmp_path, vit, monkeypatch):
    """A full disk during a shard or manifest write: an error naming the file, earlier entries stay readable."""
    first, second = davis_groups(tiny_synthetic, ["train"])[:2]
    store = FeatureStore(tmp_path / "store")
    space = FeatureSpace(store, vit, TRAIN)
    keep = [file_digest(p) for p in first.paths]
    reference, _ = space.get(first.name, keep, first.decode)
    other = [file_digest(p) for p in second.paths]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)  # the shard's write fails
    with pytest.raises(OSError, match=r"Cannot write .*shards.*\.safetensors: No space left on device"):
        space.get(second.name, other, second.decode)
    monkeypatch.undo()
    write = FeatureStore.flush.__globals__["write_atomic"]

    def manifest_fails(path, data):
        if path.name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setitem(FeatureStore.flush.__globals__, "write_atomic", manifest_fails)
    with pytest.raises(OSError, match="No space left on device"):
        space.get(second.name, other, second.decode)  # the shard is written, the manifest is not
    assert not list((tmp_path / "store").rglob("*.tmp"))
    reopened = FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN)
    stored = reopened.read(keep)
    assert stored is not None and torch.equal(stored.features, space.read(keep).features)
    torch.testing.assert_close(stored.features, reference.features, atol=2e-3, rtol=1e-3)
    assert reopened.read(other) is None
    monkeypatch.undo()
    store.flush()  # the failed flush left the manifest dirty: the next one records the second shard
    assert FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN).read(other) is not None


@pytest.mark.slow
def test_train_reads_the_store(tiny_synthetic, tmp_path, monkeypatch):
    from dinosavi.cli.modes import run_train
    from dinosavi.training.loading import load_checkpoint
    from tests.conftest import compose_config

    overrides = [
        "mode=train", "encoder=vit_tiny_random", "data=synthetic", f"data.root={tiny_synthetic}",
        "data.synthetic.num_videos=4", "data.synthetic.num_frames=6", "data.synthetic.height=64",
        "data.synthetic.width=80", "data.synthetic.val_videos=1", "data.batch_size=2", "data.clips_per_video=2",
        "train.input_size=[64,64]", "train.log_every=1", "train.max_steps=2", f"features.store={tmp_path / 'store'}",
    ]
    cfg = compose_config(*overrides)
    path = run_train(cfg, tmp_path / "run", overrides)
    assert load_checkpoint(path).step == 2
    assert len(FeatureStore(tmp_path / "store")) == 3 * 6  # the 3 training videos, train resolution


@pytest.mark.parametrize("kind", ["store", "memory"])
def test_precomputed_features_skip_a_sequence_with_a_corrupt_frame(kind, tiny_synthetic, tmp_path, vit):
    from dinosavi.data.badfiles import UnreadableFileError
    from dinosavi.features.memory import FeatureClips

    root = tmp_path / "davis"
    shutil.copytree(tiny_synthetic, root)
    corrupt = root / "JPEGImages" / "480p" / "synth-0000" / "00002.jpg"
    corrupt.write_bytes(b"not a jpeg")

    def build(skip_bad: bool):
        clips = DavisClips(root, "train", frames_per_clip=3, clips_per_video=2, size=(64, 64), skip_bad=skip_bad)
        if kind == "memory":
            return FeatureClips(clips, vit, ResizeRule(size=(64, 64)))
        return StoreClips(clips, FeatureSpace(FeatureStore(tmp_path / "store"), vit, TRAIN))

    def read(clips) -> list[torch.Tensor]:
        """Every clip's features, in order (the store encodes up front, memory as clips are drawn)."""
        items = [clips[i] for i in range(len(clips))]
        if kind == "memory":
            return [clips.prepare(default_collate([item]))["features"][0] for item in items]
        return [item["features"] for item in items]

    with pytest.raises(UnreadableFileError, match=str(corrupt)):
        read(build(skip_bad=False))
    clips = build(skip_bad=True)
    features = read(clips)
    assert set(clips.bad) == {0} and [(s.video, s.path) for s in clips.take_skips()] == [(0, str(corrupt))]
    for a, b in ((0, 2), (1, 3)):  # synth-0000's clip slots come from synth-0001
        torch.testing.assert_close(features[a], features[b])
