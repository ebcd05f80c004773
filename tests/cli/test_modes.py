"""The front door: one dispatch table, config sections become typed options, checkpoints are read once."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dinosavi.cli import modes
from dinosavi.cli.config import MODES
from dinosavi.cli.dispatch import run_mode
from dinosavi.cli.help import CONF_DIR
from dinosavi.evaluation.options import EvalOptions, ScoreOptions
from dinosavi.training.options import TrainOptions
from tests.conftest import compose_config


def test_the_table_of_modes_is_the_conf_groups_modes_and_each_runs_a_function():
    assert set(MODES) == {p.stem for p in (CONF_DIR / "mode").glob("*.yaml")}
    for name, mode in MODES.items():
        if name != "help":
            assert mode.run is not None
            module, function = mode.run.split(":")
            assert callable(getattr(import_module(module), function)), name
    for mode_name in ("bogus", "help"):
        with pytest.raises(ValueError, match=f"Unknown mode `{mode_name}`"):
            run_mode(OmegaConf.create({"mode": mode_name}), Path("."), [])


def test_sections_become_their_options_and_are_checked():
    cfg = compose_config("mode=eval", "eval.lock_on=false", "eval.num_slots=[2,3]", "train.max_steps=7")
    options = modes.options(cfg.eval, EvalOptions)
    assert isinstance(options, EvalOptions) and options.num_slots == [2, 3] and not options.lock_on
    assert modes.options(cfg.train, TrainOptions).max_steps == 7
    assert modes.options(cfg.score, ScoreOptions) == ScoreOptions()
    with pytest.raises(ValueError, match=r"Unknown eval\.output `bogus`"):
        modes.options(compose_config("mode=eval", "eval.output=bogus").eval, EvalOptions)
    with pytest.raises(ValueError, match=r"eval.num_slots applies to lock_on=false"):
        modes.options(compose_config("mode=eval", "eval.num_slots=4").eval, EvalOptions)
    with pytest.raises(TypeError, match="expected a TrainOptions section"):
        modes.options(cfg.eval, TrainOptions)


def test_save_config_writes_the_resolved_config_atomically(tmp_path):
    cfg = compose_config("mode=train", "seed=3")
    modes.save_config(cfg, tmp_path / "run")
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert saved.seed == 3 and saved.mode == "train"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["config.yaml"]  # no temporary file left


def test_a_resumed_run_reads_its_checkpoint_once(tiny_synthetic, tmp_path, monkeypatch):
    from dinosavi.training import loading

    data = [f"data.root={tiny_synthetic}", "data.synthetic.num_videos=4", "data.synthetic.num_frames=6",
            "data.synthetic.height=64", "data.synthetic.width=80", "data.synthetic.val_videos=1",
            "train.input_size=[64,80]", "data.batch_size=4", "device=cpu", "encoder=efficientnet_lite0"]
    first = modes.run_train(compose_config("mode=train", "hparam=demo", "data=synthetic", *data,
                                           "train.max_steps=1"), tmp_path / "a", [])
    loads: list[Path] = []
    load = loading.load_checkpoint
    monkeypatch.setattr(loading, "load_checkpoint", lambda path: loads.append(Path(path)) or load(path))
    overrides = [f"resume={first}", "train.max_steps=2"]
    resumed = modes.run_train(compose_config("mode=train", "data=synthetic", *data, *overrides), tmp_path / "b",
                              overrides)
    assert loads == [first]
    assert loading.load_checkpoint(resumed).step == 2


def test_cache_writes_what_it_did_into_the_run_dir(tiny_synthetic, tmp_path):
    cfg = compose_config("mode=cache", "data=synthetic", f"data.root={tiny_synthetic}", "encoder=efficientnet_lite0",
                         f"features.store={tmp_path / 'store'}", "train.input_size=[64,80]", "eval.short_side=64",
                         "device=cpu")
    summary = modes.run_cache(cfg, tmp_path / "run", [])
    assert json.loads((tmp_path / "run" / "cache.json").read_text()) == summary
    assert summary["resolutions"] == ["train", "eval"] and summary["frames"] == 4 * 6
    assert summary["encoded"] == 2 * 4 * 6
    again = modes.run_cache(cfg, tmp_path / "again", [])
    assert again["encoded"] == 0 and again["entries"] == summary["entries"]


def test_propagate_reads_frames_at_its_own_resolution(tiny_synthetic, tmp_path, monkeypatch):
    from dinosavi.evaluation import runner

    seen = {}

    def capture(source, dataset, params, options, out_dir, **kwargs):
        seen.update(rule=source.rule, preset=params.preset, split=kwargs["split"])
        return {}

    monkeypatch.setattr(runner, "evaluate_propagation", capture)
    cfg = compose_config("mode=propagate", "propagate=crw", "propagate.short_side=96", "eval.short_side=64",
                         "encoder=efficientnet_lite0", "data=davis", f"data.root={tiny_synthetic}", "device=cpu")
    modes.run_propagate(cfg, tmp_path, [])
    assert (seen["rule"].short_side, seen["rule"].multiple_of) == (96, 64)  # propagate's, not eval.short_side
    assert seen["preset"] == "crw" and seen["split"] == "val"


def _recipe_checkpoint(path: Path, *recipe: str) -> Path:
    """A checkpoint of an untrained ``hparam=demo`` model on the tiny ViT, its config recording ``recipe``."""
    from dinosavi.cli.build import build_encoder
    from dinosavi.models.factory import build_model
    from dinosavi.training.checkpoint import save_checkpoint

    cfg = compose_config("mode=train", "hparam=demo", "encoder=vit_tiny_random", *recipe)
    model = build_model(cfg.model, build_encoder(cfg.encoder).feature_dim)
    return save_checkpoint(path, model, OmegaConf.to_container(cfg, resolve=True), 0)  # type: ignore[arg-type]


def test_eval_takes_its_defaults_from_the_checkpoint_and_the_command_line_wins(tmp_path):
    """The recipe trained and documented at one evaluation size is evaluated at it unless told otherwise."""
    from dinosavi.cli.config import checkpoint_config
    from dinosavi.training.loading import load_checkpoint

    trained = load_checkpoint(_recipe_checkpoint(tmp_path / "demo.safetensors", "eval.short_side=48",
                                                 "eval.num_bg_slots=2")).config

    def evaluated(*overrides: str):
        return checkpoint_config(compose_config("mode=eval", *overrides), trained, modes.EVAL_SECTIONS,
                                 list(overrides)).eval

    assert (evaluated().short_side, evaluated().num_bg_slots) == (48, 2)  # the schema's 224 and 4 before
    assert (evaluated("eval.short_side=64").short_side, evaluated("eval.short_side=64").num_bg_slots) == (64, 2)
    original = evaluated("eval=original", "eval.num_bg_slots=3")  # a protocol over the recipe, then the keys
    assert (original.protocol, original.short_side, original.output, original.num_bg_slots) == ("original", None,
                                                                                                 "slot", 3)
    partial = {k: v for k, v in trained.items() if k != "eval"}  # saved from Python with part of a config
    assert checkpoint_config(compose_config("mode=eval"), partial, modes.EVAL_SECTIONS, []).eval.short_side == 224


def test_a_checkpoint_without_its_config_is_named(tmp_path):
    from dinosavi.cli.config import checkpoint_config

    with pytest.raises(ValueError, match=r"model\.safetensors holds no `preset` section .* saved without its config"):
        checkpoint_config(compose_config("mode=eval"), {}, modes.EVAL_SECTIONS, [], "model.safetensors")


def test_mode_eval_runs_at_the_checkpoints_evaluation_size(tiny_synthetic, tmp_path):
    path = _recipe_checkpoint(tmp_path / "demo.safetensors", "eval.short_side=48")
    overrides = [f"resume={path}", "data=synthetic", f"data.root={tiny_synthetic}", "eval.videos=false",
                 "eval.report=false", "eval.overlays=false", "device=cpu"]
    modes.run_eval(compose_config("mode=eval", *overrides), tmp_path / "run", overrides)
    assert OmegaConf.load(tmp_path / "run" / "config.yaml").eval.short_side == 48


def test_eval_propagate_and_score_read_some_sequences_and_a_frame_range(tiny_synthetic, tmp_path):
    select = ["data.split=train", "data.sequences=[synth-0001]", "data.start=1", "data.stop=5"]
    common = ["data=synthetic", f"data.root={tiny_synthetic}", "eval.videos=false", "eval.report=false",
              "eval.overlays=false", "device=cpu", *select]
    frames = ["00001", "00002", "00003", "00004"]
    path = _recipe_checkpoint(tmp_path / "demo.safetensors", "eval.short_side=64")
    evaluated = [f"resume={path}", *common]
    scores = modes.run_eval(compose_config("mode=eval", *evaluated), tmp_path / "eval", evaluated)
    propagated = ["encoder=vit_tiny_random", "propagate.short_side=64", *common]
    modes.run_propagate(compose_config("mode=propagate", *propagated), tmp_path / "propagate", propagated)
    for run in ("eval", "propagate"):
        assert [p.name for p in (tmp_path / run / "results").iterdir()] == ["synth-0001"]
        assert sorted(p.stem for p in (tmp_path / run / "results" / "synth-0001").iterdir()) == frames
        rows = (tmp_path / run / "per-sequence_results-train.csv").read_text().splitlines()[1:]
        assert rows and all(row.startswith("synth-0001_") for row in rows)  # one row per object
    scored = [f"results={tmp_path / 'eval' / 'results'}", f"data.root={tiny_synthetic}", *select]
    assert modes.run_score(compose_config("mode=score", *scored), tmp_path / "score", scored) == pytest.approx(scores)
