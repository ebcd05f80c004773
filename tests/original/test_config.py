"""The original's stored config -> ours: interpolations resolved from the file itself, every preset matched."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dinosavi.original.config import ORIGINAL_ARCHITECTURE, convert_config, match_preset
from tests.conftest import REPO_ROOT

ORIGINAL_PRESETS = sorted(
    p.stem for p in (REPO_ROOT / "dinosavi" / "conf" / "hparam").glob("*.yaml") if p.stem.startswith("slot-")
)


@pytest.fixture(scope="module")
def stored(seed_reference) -> dict:
    return torch.load(seed_reference / "bgfg.ckpt", map_location="cpu", weights_only=True)["cfg"]


def test_bgfg_config(stored):
    cfg = convert_config(stored, Path("bgfg.ckpt"))
    assert cfg["preset"] == "slot-s256d-final"
    model = cfg["model"]
    assert model["num_slots"] == [5, 5] and model["bgfg"] is True and model["pe_type"] == "learnt"
    assert model["time_steps"] == [0, 1] and model["time_decoder"] == "linear"
    assert {k: model[k] for k in ORIGINAL_ARCHITECTURE} == ORIGINAL_ARCHITECTURE
    assert cfg["train"] == {"lr": 2e-4, "pct_start": 0.1, "grad_clip": 0.05, "max_steps": 100,
                            "input_size": [224, 224], "weight_decay": 0.0}
    assert cfg["data"]["clips_per_video"] == 5 and cfg["eval"]["num_bg_slots"] == 5
    assert cfg["encoder"] == {"name": "dino_vits8"}


def test_values_come_from_the_interpolations(stored):
    changed = copy.deepcopy(stored)
    changed["hparam"]["slot"]["ini_iters"] = 7  # model.ini_iters is `${hparam.slot.ini_iters}`
    changed["hparam"]["future"]["time_steps"] = 2  # an int means range(0, 3), as in the original
    changed["hparam"]["future"]["time_decoder"] = None
    model = convert_config(changed, Path("x.ckpt"))["model"]
    assert model["ini_iters"] == 7 and model["time_steps"] == [0, 1, 2] and model["time_decoder"] == "identity"


def test_errors_name_the_key(stored):
    bad = copy.deepcopy(stored)
    bad["model"]["decoder"]["_target_"] = "dinosavi.models.heads.TransformerDecoder"
    with pytest.raises(ValueError, match=r"`model.decoder._target_` is `dinosavi.models.heads.TransformerDecoder`"):
        convert_config(bad, Path("x.ckpt"))
    bad = copy.deepcopy(stored)
    del bad["hparam"]["slot"]["num_iters"]
    with pytest.raises(ValueError, match=r"`model.num_iters` does not resolve"):
        convert_config(bad, Path("x.ckpt"))


@pytest.mark.parametrize("preset", ORIGINAL_PRESETS)
def test_every_original_preset_is_matched_by_its_recipe(preset):
    def recipe(name):
        return OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "dinosavi" / "conf" / "hparam" / f"{name}.yaml"))

    found = match_preset(recipe(preset))
    same = {k: v for k, v in recipe(found).items() if k != "preset"} == \
        {k: v for k, v in recipe(preset).items() if k != "preset"}
    assert found == preset or (same and found < preset), found  # equal recipes report the first name


def test_identical_original_presets_are_only_the_known_pair():
    assert match_preset(OmegaConf.to_container(OmegaConf.load(
        REPO_ROOT / "dinosavi" / "conf" / "hparam" / "slot-s512d.yaml"))) == "slot-control"
