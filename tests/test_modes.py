"""The front door: one dispatch table, config sections become typed options, checkpoints are read once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dinosavi import modes
from dinosavi.config import MODES as MODE_HELP
from dinosavi.evaluation.options import EvalOptions, ScoreOptions
from dinosavi.train_options import TrainOptions
from tests.conftest import compose_config


def test_every_mode_but_help_is_in_the_dispatch_table():
    assert set(modes.MODES) == set(MODE_HELP) - {"help"}
    with pytest.raises(ValueError, match="Unknown mode `bogus`"):
        modes.run_mode(OmegaConf.create({"mode": "bogus"}), Path("."), [])


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
    from dinosavi import checkpoint

    data = [f"data.root={tiny_synthetic}", "data.synthetic.num_videos=4", "data.synthetic.num_frames=6",
            "data.synthetic.height=64", "data.synthetic.width=80", "data.synthetic.val_videos=1",
            "train.input_size=[64,80]", "data.batch_size=4", "device=cpu", "encoder=efficientnet_lite0"]
    first = modes.run_train(compose_config("mode=train", "hparam=demo", "data=synthetic", *data,
                                           "train.max_steps=1"), tmp_path / "a", [])
    loads: list[Path] = []
    load = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda path: loads.append(Path(path)) or load(path))
    overrides = [f"resume={first}", "train.max_steps=2"]
    resumed = modes.run_train(compose_config("mode=train", "data=synthetic", *data, *overrides), tmp_path / "b",
                              overrides)
    assert loads == [first]
    assert checkpoint.load_checkpoint(resumed).step == 2


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
    with pytest.raises(ValueError, match=r"Unknown features.resolutions"):
        modes.run_cache(compose_config("mode=cache", "data=synthetic", f"data.root={tiny_synthetic}",
                                       f"features.store={tmp_path}", "features.resolutions=[test]"), tmp_path, [])


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
