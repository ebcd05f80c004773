"""The modes behind the CLI: help, train, eval, demo. Each takes the composed config and a run dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dinosavi.config import MODES, Config

__all__ = ["checkpoint_config", "print_help", "run_demo", "run_eval", "run_propagate", "run_segment", "run_train"]

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).parent / "conf"


def _save_config(cfg: DictConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(run_dir / "config.yaml")


def _override_keys(overrides: list[str]) -> list[str]:
    """Keys and groups set by command-line ``overrides`` (``hydra.*`` left out)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if not o.key_or_group.startswith("hydra")]


def checkpoint_config(
    cfg: DictConfig, ckpt_config: dict[str, Any], sections: list[str], overrides: list[str]
) -> DictConfig:
    """``cfg`` with ``sections`` taken from a checkpoint's config, command-line settings re-applied.

    Keys the user set on the command line keep the user's value, so ``resume=... train.max_steps=N``
    extends a run and ``encoder.weights=<path>`` points a checkpoint at local weights. A config-group
    choice (``data=davis``, ``hparam=...``) would replace a whole section with its defaults, so for the
    checkpoint's sections it is ignored with a warning: set the keys instead.
    """
    merged = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(merged, dict)
    for section in sections:
        if section not in ckpt_config:
            raise ValueError(f"checkpoint config has no `{section}` section; was it written by dinosavi?")
        merged[section] = ckpt_config[section]
    out = OmegaConf.merge(OmegaConf.structured(Config), merged)
    for key in _override_keys(overrides):
        if key.split(".")[0] not in sections:
            continue
        value = OmegaConf.select(cfg, key)
        if isinstance(value, DictConfig) or key == "hparam":
            log.warning("`%s` is a config group; the checkpoint's `%s` section is kept (set its keys instead)",
                        key, key)
            continue
        OmegaConf.update(out, key, value, merge=False)
    assert isinstance(out, DictConfig)
    return out


def run_train(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path:
    """``mode=train``: train, or continue the run of ``resume=<checkpoint>``.

    ``overrides`` are the command line's; on resume they are re-applied to the checkpoint's config.
    """
    from dinosavi.checkpoint import load_checkpoint
    from dinosavi.train import train

    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume)
        keep = [k for k in ckpt.config if k not in ("mode", "resume")]
        cfg = checkpoint_config(cfg, ckpt.config, keep, overrides)
    _save_config(cfg, run_dir)
    path = train(cfg, run_dir)
    log.info("final checkpoint: %s", path)
    return path


def run_eval(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """``mode=eval``: semi-supervised DAVIS evaluation of ``resume=<checkpoint>``; returns the global scores."""
    if not cfg.resume:
        raise ValueError("mode=eval needs resume=<checkpoint.safetensors>")
    return _evaluate(Path(cfg.resume), cfg, run_dir, overrides)


def _evaluate(ckpt_path: Path, cfg: DictConfig, out_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Evaluate a checkpoint: its model and encoder config, the data and eval options of ``cfg``."""
    from dinosavi.checkpoint import load_checkpoint
    from dinosavi.evaluation.runner import evaluate_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    cfg = checkpoint_config(cfg, ckpt.config, ["preset", "model", "encoder"], overrides)
    _save_config(cfg, out_dir)
    return evaluate_checkpoint(ckpt, cfg, out_dir)


def run_propagate(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """``mode=propagate``: label propagation with the frozen ``encoder`` on a DAVIS-layout split; returns the
    global scores. Writes what ``mode=eval`` writes (PNGs, overlays, videos, CSVs, JSON, report.html).
    """
    from dinosavi.evaluation.propagate import evaluate_propagation

    _save_config(cfg, run_dir)
    return evaluate_propagation(cfg, run_dir)


def run_segment(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path | None:
    """``mode=segment`` (and ``mode=propagate input=<video>``): segment the videos of ``input=`` with the slot
    model of ``resume=<checkpoint>`` (its model and encoder config) or, with ``method=propagate``, by label
    propagation of ``first_mask``; returns the path of ``report.html``."""
    from dinosavi.evaluation.segment import segment_inputs

    ckpt = None
    if cfg.mode == "propagate":
        cfg = cast(DictConfig, OmegaConf.merge(cfg, {"method": "propagate"}))
    if cfg.method == "slots":
        from dinosavi.checkpoint import load_checkpoint

        if not cfg.resume:
            raise ValueError("mode=segment needs resume=<checkpoint.safetensors> (a slot model), or "
                             "method=propagate first_mask=<palette PNG> with any encoder=")
        ckpt = load_checkpoint(cfg.resume)
        cfg = checkpoint_config(cfg, ckpt.config, ["preset", "model", "encoder"], overrides)
    elif cfg.resume:
        log.warning("method=%s uses no checkpoint; resume=%s is ignored", cfg.method, cfg.resume)
    _save_config(cfg, run_dir)
    return segment_inputs(cfg, run_dir, ckpt)


def run_demo(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, dict[str, float]]:
    """``mode=demo``: train on the synthetic set, evaluate on its val split and on the DAVIS sample."""
    from dinosavi.train import train

    _save_config(cfg, run_dir)
    ckpt = train(cfg, run_dir)
    results = {}
    synthetic = cast(DictConfig, OmegaConf.merge(cfg, {"data": {"split": "val"}}))
    results["synthetic"] = _evaluate(ckpt, synthetic, run_dir / "eval" / "synthetic", overrides)
    # object discovery: every slot a segment, no first-frame masks
    discovery = cast(DictConfig, OmegaConf.merge(synthetic, {"eval": {"lock_on": False}}))
    results["synthetic (unsupervised)"] = _evaluate(ckpt, discovery, run_dir / "eval" / "synthetic-unsupervised",
                                                    overrides)
    davis_data = {"name": "davis", "root": cfg.demo.davis_root, "split": "val"}
    davis = cast(DictConfig, OmegaConf.merge(cfg, {"data": davis_data}))
    results["davis"] = _evaluate(ckpt, davis, run_dir / "eval" / "davis", overrides)
    # the label-propagation baseline with the same (frozen) encoder, at stride 16 to stay quick on a CPU
    baseline = cast(DictConfig, OmegaConf.merge(davis, {"encoder": {"stride": 16}}))
    results["davis (propagation baseline)"] = run_propagate(baseline, run_dir / "eval" / "davis-propagate")
    print(f"\ncheckpoint: {ckpt}")
    folders = {"synthetic": "synthetic", "synthetic (unsupervised)": "synthetic-unsupervised", "davis": "davis",
               "davis (propagation baseline)": "davis-propagate"}
    for name, scores in results.items():
        found = f"  FG-ARI {scores['FG-ARI']:.3f}  mBO {scores['mBO']:.3f}" if "FG-ARI" in scores else ""
        print(f"{name:>30}: J&F {scores['J&F-Mean']:.3f}  J {scores['J-Mean']:.3f}  F {scores['F-Mean']:.3f}{found}"
              f"  overlays in {run_dir / 'eval' / folders[name] / 'overlays'}")
    return results


def _presets() -> list[tuple[str, str]]:
    out = []
    for path in sorted((CONF_DIR / "hparam").glob("*.yaml")):
        lines = [ln[2:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ") and "@package" not in ln]
        out.append((path.stem, lines[0] if lines else ""))
    return out


def print_help(overrides: list[str]) -> None:
    """``mode=help``: modes, presets, config groups and the main options with their values."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("main", overrides=overrides)
    groups = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in ("data", "encoder", "propagate")}
    lines = ["dinosavi: self-supervised video object segmentation with slots on frozen features", "",
             "usage: python -m dinosavi mode=<mode> [group=option] [key=value ...]", "", "modes:"]
    lines += [f"  {name:<8} {text}" for name, text in MODES.items()]
    lines += ["", "presets (hparam=<name>):"]
    lines += [f"  {name:<32} {text}" for name, text in _presets()]
    lines += ["", "config groups:"] + [f"  {g}=<{'|'.join(opts)}>" for g, opts in groups.items()]
    lines += ["", "main options (current values):"]
    for key in ("data.root", "data.split", "data.batch_size", "data.num_workers", "data.frames_per_clip",
                "train.max_steps", "train.save_every", "train.log_every", "train.lr", "device", "exp_name",
                "resume", "seed", "eval.lock_on", "eval.short_side", "eval.num_bg_slots", "eval.num_extra_slots",
                "eval.num_slots", "eval.output", "eval.track_mode", "input", "first_mask", "method", "segment.max_fps",
                "segment.short_side", "segment.start", "segment.stop", "demo.davis_root"):
        lines.append(f"  {key:<24} {OmegaConf.select(cfg, key)}")
    lines += ["", "run directory: outputs/<exp_name>/<timestamp>/ (hydra.run.dir=<dir> to choose)",
              "every key: python -m dinosavi mode=train --cfg job"]
    print("\n".join(lines))
