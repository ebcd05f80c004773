"""An original checkpoint through the CLI's modes: eval (the original's protocol), convert (same PNGs), and
fine-tuning; help lists all 29 original presets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from dinosavi.cli.modes import run_convert, run_eval, run_train
from dinosavi.data.davis import read_palette_png
from dinosavi.training.loading import load_checkpoint
from dinosavi.utils import seed_everything
from tests.conftest import REPO_ROOT, compose_config

VIT_S8 = "encoder.name=random:vit_small_patch8_224.dino"  # the 384-d shape the checkpoints need, no hub
# the original repository's dinosavi/cfg/hparam, at the commit the seed reference was made from
ORIGINAL_PRESETS = [
    "slot-control", "slot-s128d", "slot-s256d", "slot-s256d-bgfg", "slot-s256d-extra", "slot-s256d-final",
    "slot-s256d-final-ini5", "slot-s256d-final-line-ini5", "slot-s256d-final-t0", "slot-s256d-final-t1",
    "slot-s256d-ini5", "slot-s256d-line", "slot-s256d-line-t01-tline", "slot-s256d-line-t01-tline-ini5",
    "slot-s256d-sine", "slot-s256d-t0-tline", "slot-s256d-t01", "slot-s256d-t01-none", "slot-s256d-t01-tline",
    "slot-s256d-t01-tline-ini3", "slot-s256d-t01-tline-ini5", "slot-s256d-t01-tline-ini8", "slot-s256d-t02",
    "slot-s256d-t02-tline", "slot-s256d-t02-tline-ini5", "slot-s256d-t03", "slot-s256d-t03-tline", "slot-s512d",
    "slot-s768d",
]


def _data(root: Path) -> list[str]:
    return ["data=synthetic", f"data.root={root}", "data.synthetic.num_videos=4", "data.synthetic.num_frames=6",
            "data.synthetic.height=64", "data.synthetic.width=80", "data.synthetic.val_videos=1"]


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): read_palette_png(p)[0] for p in sorted(folder.rglob("*.png"))}


def _eval(resume: Path, root: Path, out: Path, *extra: str) -> dict[str, float]:
    overrides = ["mode=eval", f"resume={resume}", *_data(root), "data.split=val", VIT_S8, "eval.videos=false",
                 "eval.overlays=false", "eval.report=false", "device=cpu", *extra]
    return run_eval(compose_config(*overrides), out, overrides)


def test_help_lists_all_29_original_presets():
    assert len(set(ORIGINAL_PRESETS)) == 29
    out = subprocess.run([sys.executable, "-m", "dinosavi", "mode=help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if "[original]" in line}
    assert listed == set(ORIGINAL_PRESETS)
    assert "eval=<dinosavi|original|slotcontrast|videosaur>" in out


def test_eval_original_protocol_and_convert_give_the_same_pngs(seed_reference, tiny_synthetic, tmp_path):
    scores = _eval(seed_reference / "bgfg.ckpt", tiny_synthetic, tmp_path / "ckpt", "eval=original")
    assert 0.0 <= scores["J&F-Mean"] <= 1.0
    overrides = ["mode=convert", f"resume={seed_reference / 'bgfg.ckpt'}", f"out={tmp_path / 'bgfg.safetensors'}"]
    path = run_convert(compose_config(*overrides), tmp_path / "convert", overrides)
    converted = load_checkpoint(path)
    assert converted.config["preset"] == "slot-s256d-final" and converted.extra["source"] == "original-dinosavi"
    assert converted.extra["original_config"]["model"]["num_slots"] == "${hparam.slot.num_slots}"
    assert _eval(path, tiny_synthetic, tmp_path / "safetensors", "eval=original") == scores
    ours, theirs = _pngs(tmp_path / "ckpt" / "results"), _pngs(tmp_path / "safetensors" / "results")
    assert ours.keys() == theirs.keys() and len(ours) == 6
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_fine_tune_an_original_checkpoint(seed_reference, tiny_synthetic, tmp_path):
    overrides = ["mode=train", f"resume={seed_reference / 'headline.ckpt'}", *_data(tiny_synthetic), VIT_S8,
                 "data.batch_size=2", "data.clips_per_video=2", "data.frames_per_clip=3", "train.input_size=[64,64]",
                 "train.max_steps=1", "device=cpu"]
    cfg = compose_config(*overrides)
    seed_everything(cfg.seed)
    ckpt = load_checkpoint(run_train(cfg, tmp_path, overrides))
    original = load_checkpoint(seed_reference / "headline.ckpt")
    assert ckpt.step == 1 and ckpt.config["preset"] == "slot-s256d-line-t01-tline-ini5"
    assert ckpt.config["data"]["name"] == "synthetic" and ckpt.config["train"]["lr"] == 1e-4
    assert ckpt.model.keys() == original.model.keys()
    key = "frame.slot_attention.project_k.weight"
    assert not torch.equal(ckpt.model[key], original.model[key])
