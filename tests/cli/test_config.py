import re
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from dinosavi.original.config import ORIGINAL_ARCHITECTURE
from tests.conftest import REPO_ROOT, compose_config

HPARAM = REPO_ROOT / "dinosavi" / "conf" / "hparam"
PRESETS = sorted(p.stem for p in HPARAM.glob("*.yaml"))
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


@pytest.mark.parametrize("preset", ["demo", "demo-identity"])
def test_the_demo_presets_carry_their_encoder(preset):
    """``hparam=demo`` is the recipe of ``mode=demo``, encoder and stride included; the command line wins."""
    cfg = compose_config("mode=train", f"hparam={preset}")
    assert (cfg.encoder.name, cfg.encoder.stride) == ("efficientnet_lite0", 16)
    assert cfg.encoder == compose_config("mode=demo").encoder
    assert compose_config("mode=train", f"hparam={preset}", "encoder=vit_tiny_random").encoder.name == "vit_tiny_random"
    assert compose_config("mode=train", f"hparam={preset}", "encoder.stride=8").encoder.stride == 8


def test_unknown_key_is_named():
    with pytest.raises(ConfigCompositionException, match="bogus") as info:
        compose_config("model.bogus=1")
    assert "bogus" in str(info.value.__cause__)


def test_wrong_type_is_named():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("train.max_steps=lots")
    assert "max_steps" in str(info.value.__cause__) and "lots" in str(info.value.__cause__)


def test_every_config_file_opens_with_what_it_is():
    """Each YAML's first lines, above its first key (Hydra's ``@package`` line aside), are a comment that says
    what the file is."""
    for path in (REPO_ROOT / "dinosavi" / "conf").rglob("*.yaml"):
        header = _header(path)
        assert header and len(header[0].split()) >= 3, f"{path} does not open with a comment saying what it is"


def _header(preset: str | Path) -> list[str]:
    """The comment lines above a preset's (or a YAML file's) first key, without ``# `` and Hydra's ``@package``
    line."""
    lines = []
    path = preset if isinstance(preset, Path) else HPARAM / f"{preset}.yaml"
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            lines.append(line[1:].strip())
    return lines


def _recipe(preset: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(HPARAM / f"{preset}.yaml"))  # type: ignore[return-value]


def _time_steps(text: str) -> list[int]:
    """``[0, 2]`` as written, or the original's int ``n`` for ``range(n + 1)``."""
    return [int(k) for k in re.findall(r"\d+", text)] if text.startswith("[") else list(range(int(text) + 1))


# What a header may say about its recipe, and what the recipe must then hold. Each claim is checked
# wherever it appears in a header (the description or the original's diff to its base preset).
CLAIMS = [
    (r"(\d+)-d slots", lambda r, m: r["model"]["slot_dim"] == int(m[1])),
    (r"slot dim (\d+)", lambda r, m: r["model"]["slot_dim"] == int(m[1])),
    (r"\(hidden (\d+)\)", lambda r, m: r["model"]["hidden_dim"] == int(m[1])),
    (r"(\d+) (?:initial iterations|slot-attention iterations on the first frame)|ini_iters (\d+)",
     lambda r, m: r["model"]["ini_iters"] == int(m[1] or m[2])),
    (r"\bt and t\+(\d)", lambda r, m: r["model"]["time_steps"] == [0, int(m[1])]),
    (r"time steps (\[[\d, ]+\]|\d+)", lambda r, m: r["model"]["time_steps"] == _time_steps(m[1])),
    (r"only the next frame t\+1", lambda r, m: r["model"]["time_steps"] == [1]),
    (r"present[- ]frame (?:reconstruction )?only|reconstructing the present frame only",
     lambda r, m: r["model"]["time_steps"] == [0]),
    (r"linear time decoders?|t\+\d linear|\] linear|, linear\)",
     lambda r, m: r["model"]["time_decoder"] == "linear"),
    (r"attention time decoders|, attn\)", lambda r, m: r["model"]["time_decoder"] == "attn"),
    (r"no time decoders?|time_decoder null", lambda r, m: r["model"]["time_decoder"] == "identity"),
    (r"linear PE|linear positional", lambda r, m: r["model"]["pe_type"] == "linear"),
    (r"sine PE|sine positional", lambda r, m: r["model"]["pe_type"] == "sine"),
    (r"learnt PE", lambda r, m: r["model"]["pe_type"] == "learnt"),
    (r"SAVi predictor|SAVi's predictor", lambda r, m: r["model"]["predictor"] == "savi"),
    (r"identity predictor", lambda r, m: r["model"]["predictor"] == "identity"),
    (r"per-frame slots|fresh slots every frame", lambda r, m: r["model"]["predictor"] == "none"),
    (r"(\d+) background and (\d+) foreground slots|bgfg always \[(\d+), (\d+)\]",
     lambda r, m: r["model"]["num_slots"] == [int(m[1] or m[3]), int(m[2] or m[4])]),
    (r"bgfg groups", lambda r, m: r["model"]["bgfg"] is True),
    (r"strategy always|bgfg always", lambda r, m: r["model"]["bgfg_strategy"] == "always"),
    (r"(\d+) clips per video|(\d+) epochs", lambda r, m: r["data"]["clips_per_video"] == int(m[1] or m[2])),
    (r"lr ([\d.e-]+)", lambda r, m: r["train"]["lr"] == float(m[1])),
    (r"clip ([\d.]+)", lambda r, m: r["train"]["grad_clip"] == float(m[1])),
    (r"model\.blend=(\w+)", lambda r, m: r["model"]["blend"] == m[1]),
    (r"the mixer", lambda r, m: r["model"]["decoder"] == "mixer"),
    (r"no position on the input", lambda r, m: r["model"]["input_pe"] == "none"),
]
# Claims the code now contradicts: everything of the original is reproduced (tests/original).
STALE = re.compile(r"not reproduced|unsupported|not supported|not implemented|no extra-slot|always locks on", re.I)
ORIGINAL = re.compile(r"^Original preset `([\w-]+)` of Interpause/dinosavi(?: \(([\w-]+)[^)]*\))?; "
                      r"every value below is the original's resolved value unless a comment says otherwise\.$")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_header_says_what_the_recipe_is(preset):
    """The first line (what ``mode=help`` prints) is one whole sentence, and every claim holds."""
    lines = _header(preset)
    assert lines and lines[0].endswith(".") and not lines[0].startswith("Original preset"), lines[:1]
    text = " ".join(lines)
    recipe = _recipe(preset)
    checked = 0
    for pattern, holds in CLAIMS:
        for match in re.finditer(pattern, text):
            assert holds(recipe, match), f"{preset}: the header says `{match[0]}`"
            checked += 1
    assert checked, f"{preset}: the header states nothing checkable"
    stale = STALE.search(text)
    assert stale is None, f"{preset}: the header claims `{stale[0]}`, which the code contradicts"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_header_names_its_source(preset):
    """An original preset names itself and the preset it varies; ours name a paper, a mode or a file here."""
    lines = _header(preset)
    sources = [ORIGINAL.match(line) for line in lines if line.startswith("Original preset")]
    if preset.startswith("slot-"):  # the original DINOSAVi's presets keep their names
        assert len(sources) == 1 and sources[0], f"{preset}: no well-formed `Original preset` line"
        assert sources[0][1] == preset
        assert sources[0][2] is None or (HPARAM / f"{sources[0][2]}.yaml").is_file(), sources[0][2]
        model = _recipe(preset)["model"]
        assert {k: model[k] for k in ORIGINAL_ARCHITECTURE} == ORIGINAL_ARCHITECTURE
        text = " ".join(lines)
        stated = re.search(r"\(input_mlp (\w+), loss_norm (\w+), style (\w+)\)", text)
        assert stated and stated.groups() == (str(model["input_mlp"]).lower(), model["loss_norm"], model["style"])
        missing = [key for key in _recipe(preset)["eval"] if key not in text]
        assert not missing, f"{preset}: the header does not say where eval keys {missing} come from"
        needs_cls = "Needs an encoder with CLS attention" in text
        assert needs_cls == model["bgfg"] == ("needs a ViT encoder" in lines[0]), preset
    else:
        assert not sources, f"{preset} is ours but claims to be an original preset"
        text = " ".join(lines)
        files = re.findall(r"\b((?:benchmarks|dinosavi|tests)/[\w/.-]+\.(?:py|md|yaml))", text)
        assert re.search(r"\(\w+ et al\., \d{4}\)|mode=\w+", text) or files, f"{preset} names no source"
        for file in files:
            assert (REPO_ROOT / file).is_file(), f"{preset}: {file} does not exist"


def test_overrides_named_in_preset_headers_compose():
    """Every ``key=value`` a header suggests is a working override of that preset (``<...>`` are placeholders)."""
    seen: dict[str, str] = {}
    for preset in PRESETS:
        for override in re.findall(r"(?<![\w.`])([a-z_]+(?:\.[a-z_]+)*=[^\s,;)`]+)", " ".join(_header(preset))):
            if "<" not in override:
                seen.setdefault(override.rstrip("."), preset)
    assert {"encoder=dino_vits8", "eval=original", "model.style=dinosavi", "mode=demo"} <= set(seen)
    for override, preset in seen.items():
        cfg = compose_config(f"hparam={preset}", "mode=train", override)
        key, value = override.split("=", 1)
        if "." in key:  # a value, not a config group
            assert str(OmegaConf.select(cfg, key)).lower() == value.lower(), override
