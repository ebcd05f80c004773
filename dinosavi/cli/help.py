"""``mode=help`` (and a command line without ``mode=``): the modes, the presets, the config groups and the
main options with their current values. Runs without making a run directory and without importing torch."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dinosavi.cli.config import MODES, register_configs

__all__ = ["CONF_DIR", "print_help"]

CONF_DIR = Path(__file__).parent.parent / "conf"


def _presets() -> list[tuple[str, str]]:
    out = []
    for path in sorted((CONF_DIR / "hparam").glob("*.yaml")):
        lines = [ln[2:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ") and "@package" not in ln]
        original = any(ln.startswith("Original preset `") for ln in lines)  # the original DINOSAVi's recipes
        out.append((path.stem, ("[original] " if original else "[ours] ") + (lines[0] if lines else "")))
    return out


def print_help(overrides: list[str]) -> None:
    """``mode=help``: modes, presets, config groups and the main options with their values."""
    register_configs()  # the schema main.yaml names (idempotent; the entry point has registered it already)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("main", overrides=overrides)
    groups = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
              for g in ("data", "encoder", "eval", "propagate")}
    lines = ["dinosavi: self-supervised video object segmentation with slots on frozen features", "",
             "usage: python -m dinosavi mode=<mode> [group=option] [key=value ...]", "", "modes:"]
    lines += [f"  {name:<8} {mode.help}" for name, mode in MODES.items()]
    lines += ["", "presets (hparam=<name>):"]
    lines += [f"  {name:<32} {text}" for name, text in _presets()]
    lines += ["", "config groups:"] + [f"  {g}=<{'|'.join(opts)}>" for g, opts in groups.items()]
    lines += ["", "main options (current values):"]
    for key in ("data.root", "data.split", "data.sequences", "data.start", "data.stop", "data.batch_size",
                "data.num_workers", "data.frames_per_clip", "train.max_steps", "train.save_every", "train.log_every",
                "train.lr", "train.compile", "device", "exp_name",
                "resume", "seed", "eval.lock_on", "eval.short_side", "eval.num_bg_slots", "eval.num_extra_slots",
                "eval.num_slots", "eval.output", "eval.background_mask", "eval.label_sampling", "eval.track_mode",
                "input", "first_mask", "method", "segment.max_fps", "segment.short_side", "segment.start",
                "segment.stop", "segment.first_mask_frame", "demo.davis_root", "demo.davis_short_side"):
        lines.append(f"  {key:<24} {OmegaConf.select(cfg, key)}")
    lines += ["", "run directory: outputs/<exp_name>/<timestamp>/ (hydra.run.dir=<dir> to choose)",
              "every key: python -m dinosavi mode=train --cfg job"]
    print("\n".join(lines))
