"""Training: one step of every preset, TensorBoard and checkpoints, exact resume."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dinosavi.checkpoint import load_checkpoint
from dinosavi.modes import run_train
from dinosavi.utils import seed_everything
from tests.conftest import compose_config
from tests.test_config import PRESETS


def _train(root: Path, run_dir: Path, *extra: str) -> Path:
    """Compose the CLI config for ``extra`` on the tiny set and train; returns the final checkpoint."""
    overrides = [
        "mode=train", "encoder=vit_tiny_random", "data=synthetic", f"data.root={root}",
        "data.synthetic.num_videos=4", "data.synthetic.num_frames=6", "data.synthetic.height=64",
        "data.synthetic.width=80", "data.synthetic.val_videos=1", "data.batch_size=2", "data.clips_per_video=2",
        "train.input_size=[64,64]", "train.log_every=1", *extra,
    ]
    cfg = compose_config(*overrides)
    seed_everything(cfg.seed)  # as the CLI entry point does
    return run_train(cfg, run_dir, overrides)


@pytest.mark.parametrize("preset", PRESETS)
def test_one_training_step_per_preset(preset, tiny_synthetic, tmp_path):
    path = _train(tiny_synthetic, tmp_path, f"hparam={preset}", "train.max_steps=1", "features.in_memory=false")
    ckpt = load_checkpoint(path)
    assert ckpt.step == 1
    assert ckpt.config["preset"] == preset
    assert all(torch.isfinite(v).all() for v in ckpt.model.values())
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").is_file()


def test_in_memory_features_match_online(tiny_synthetic):
    from dinosavi.data.videos import DavisClips
    from dinosavi.encoders.base import ResizeRule
    from dinosavi.encoders.registry import build_encoder
    from dinosavi.features.memory import FeatureClips

    encoder = build_encoder("vit_tiny_random").freeze()
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


def test_resume_continues_exactly(tiny_synthetic, tmp_path):
    full = load_checkpoint(_train(tiny_synthetic, tmp_path / "full", "hparam=demo", "train.max_steps=6"))
    _train(tiny_synthetic, tmp_path / "part", "hparam=demo", "train.max_steps=6", "train.save_every=3")
    half = tmp_path / "part" / "checkpoints" / "step-0000003.safetensors"
    assert load_checkpoint(half).step == 3
    resumed = load_checkpoint(_train(tiny_synthetic, tmp_path / "resumed", f"resume={half}"))
    assert resumed.step == 6
    for key, value in full.model.items():
        assert torch.equal(resumed.model[key], value), key


def test_resume_keeps_the_checkpoint_recipe(tiny_synthetic, tmp_path):
    path = _train(tiny_synthetic, tmp_path / "a", "hparam=demo", "train.max_steps=1")
    # resuming with the default preset on the command line still trains the checkpoint's model,
    # and an explicit key on the command line wins
    resumed = _train(tiny_synthetic, tmp_path / "b", f"resume={path}", "train.max_steps=2")
    cfg = OmegaConf.load(tmp_path / "b" / "config.yaml")
    assert cfg.preset == "demo" and cfg.train.max_steps == 2
    assert load_checkpoint(resumed).step == 2
