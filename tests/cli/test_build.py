"""Config sections become objects: datasets dispatched once on data.name, resolutions, models from checkpoints."""

from __future__ import annotations

import pytest
import torch

from dinosavi.cli import build
from dinosavi.cli.config import DataConfig
from dinosavi.features.space import resolution
from dinosavi.models.factory import build_model
from dinosavi.models.keys import feature_width
from dinosavi.training.checkpoint import Checkpoint
from tests.conftest import compose_config

# what the error for a missing data.root says the folder should hold
LAYOUT_WORDS = {"davis": "JPEGImages/, Annotations/ and ImageSets/", "synthetic": "generate the synthetic set",
                "movi": "rgb/<video>/", "videos": ".mp4, .webm or .avi", "ytvis": "train/instances.json"}


def test_every_dataset_names_its_layout_when_the_root_is_missing(tmp_path):
    assert set(build.DATASETS) == set(LAYOUT_WORDS)
    for name, words in LAYOUT_WORDS.items():
        with pytest.raises(FileNotFoundError, match=f"data.root={tmp_path / 'none'} is not a folder") as info:
            build.check_data_root(DataConfig(name=name, root=str(tmp_path / "none")))
        assert words in str(info.value), (name, str(info.value))
    with pytest.raises(ValueError, match="Unknown dataset `bogus`"):
        build.check_data_root(DataConfig(name="bogus", root=str(tmp_path)))


def test_videos_have_no_sequences_to_evaluate(tmp_path):
    with pytest.raises(ValueError, match="data=videos has no annotations"):
        build.build_sequences(DataConfig(name="videos", root=str(tmp_path)), "val")


def test_sequences_clips_and_groups_of_one_dataset(tiny_synthetic):
    data = DataConfig(name="davis", root=str(tiny_synthetic), frames_per_clip=2)  # the synthetic set is DAVIS layout
    assert len(build.build_sequences(data, "val")) == 1
    clips = build.build_clip_dataset(data, "train", (32, 40), seed=0)
    assert clips[0].shape == (2, 3, 32, 40)
    assert {g.name for g in build.build_source_groups(data)} == {f"synth-{i:04d}" for i in range(4)}


def test_the_resolutions_are_those_of_the_feature_source():
    cfg = compose_config("mode=eval", "encoder=efficientnet_lite0", "encoder.stride=16", "eval.short_side=96",
                         "train.input_size=[48,64]", "propagate=dino")
    encoder = build.build_encoder(cfg.encoder)
    assert encoder.name == "efficientnet_lite0" and encoder.patch_size == 16
    assert build.build_resolution(cfg, encoder, "eval") == resolution("eval", (48, 64), 96, 16)
    assert build.build_resolution(cfg, encoder, "train") == resolution("train", (48, 64), 96, 16)
    propagate = build.build_resolution(cfg, encoder, "propagate")
    assert (propagate.rule.short_side, propagate.rule.multiple_of) == (480, 64)
    assert build.build_feature_source(cfg, encoder, "eval").space is None  # no features.store


def test_load_model_checks_the_feature_width_and_loads_strictly():
    cfg = compose_config("mode=eval", "hparam=demo", "encoder=efficientnet_lite0")
    encoder = build.build_encoder(cfg.encoder)
    model = build_model(cfg.model, encoder.feature_dim)
    ckpt = Checkpoint(config={}, step=3, model=model.state_dict(), extra={"feature_dim": encoder.feature_dim})
    loaded = build.load_model(ckpt, cfg.model, encoder)
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="takes 384-d features"):
        build.load_model(Checkpoint(config={}, step=0, model={}, extra={"feature_dim": 384}), cfg.model, encoder)
    with pytest.raises(RuntimeError, match="Missing key"):
        build.load_model(Checkpoint(config={}, step=0, model={}), cfg.model, encoder)


def test_slot_groups_need_an_encoder_with_cls_attention():
    cfg = compose_config("mode=train", "hparam=slot-s256d-bgfg", "encoder=efficientnet_lite0")
    with pytest.raises(ValueError, match="background/foreground slot groups"):
        build.check_model_encoder(cfg.model, build.build_encoder(cfg.encoder), cfg.preset)


def test_every_checkpoint_is_checked_for_the_encoders_feature_width():
    """A checkpoint of our own training records no feature_dim (only converted originals do): its width is read
    off its weights, and a narrower model than the encoder's features is a ValueError, not a size mismatch."""
    cfg = compose_config("mode=eval", "hparam=demo", "encoder=efficientnet_lite0")
    encoder = build.build_encoder(cfg.encoder)
    assert encoder.feature_dim != 64
    own = Checkpoint(config={"preset": "demo", "encoder": {"name": "vit_tiny_random"}}, step=3,
                     model=build_model(cfg.model, 64).state_dict())
    message = (rf"\(preset `demo`\) takes 64-d features; encoder `efficientnet_lite0` gives {encoder.feature_dim}-d "
               r"features: set encoder\.name=vit_tiny_random")
    with pytest.raises(ValueError, match=message):
        build.load_model(own, cfg.model, encoder)
    assert feature_width(own.model) == 64
    with pytest.raises(ValueError, match=message):
        build.check_feature_width(own, encoder)  # what training's resume= calls
    fits = Checkpoint(config={}, step=3, model=build_model(cfg.model, encoder.feature_dim).state_dict())
    assert feature_width(fits.model) == encoder.feature_dim
    build.check_feature_width(fits, encoder)


def test_resuming_training_with_another_encoder_names_the_widths(tiny_synthetic, tmp_path):
    from dinosavi.cli import modes

    cfg = compose_config("mode=train", "hparam=demo", "data=davis", f"data.root={tiny_synthetic}",
                         "encoder=efficientnet_lite0", "device=cpu")
    resume = Checkpoint(config={"preset": "demo"}, step=1, model=build_model(cfg.model, 64).state_dict())
    with pytest.raises(ValueError, match=r"\(preset `demo`\) takes 64-d features; encoder `efficientnet_lite0`"):
        modes.train_from_config(cfg, tmp_path, resume=resume)
