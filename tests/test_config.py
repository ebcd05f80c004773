from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import REPO_ROOT, compose_config

PRESETS = sorted(p.stem for p in (REPO_ROOT / "dinosavi" / "conf" / "hparam").glob("*.yaml"))
MODES = sorted(p.stem for p in (REPO_ROOT / "dinosavi" / "conf" / "mode").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes(preset):
    cfg = compose_config(f"hparam={preset}", "mode=train")
    assert cfg.preset == preset
    assert cfg.mode == "train"
    assert cfg.model.slot_dim > 0 and cfg.train.max_steps > 0


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_composes(mode):
    assert compose_config(f"mode={mode}").mode == mode


def test_demo_mode_selects_its_recipe():
    cfg = compose_config("mode=demo")
    chosen = (cfg.preset, cfg.data.name, cfg.encoder.name, cfg.exp_name)
    assert chosen == ("demo", "synthetic", "efficientnet_lite0", "demo")
    # the command line still wins over the mode's choices
    assert compose_config("mode=demo", "hparam=dinosaur").preset == "dinosaur"


def test_unknown_key_is_named():
    with pytest.raises(ConfigCompositionException, match="bogus") as info:
        compose_config("model.bogus=1")
    assert "bogus" in str(info.value.__cause__)


def test_wrong_type_is_named():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("train.max_steps=lots")
    assert "max_steps" in str(info.value.__cause__) and "lots" in str(info.value.__cause__)


def test_every_config_file_is_documented():
    for path in (REPO_ROOT / "dinosavi" / "conf").rglob("*.yaml"):
        if path.parent.name == "conf":
            continue
        text = Path(path).read_text()
        assert "#" in text, f"{path} has no comment saying what it is"
