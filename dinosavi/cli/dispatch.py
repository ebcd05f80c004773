"""Runs the mode a config names, through the one table of modes (:data:`dinosavi.cli.config.MODES`)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dinosavi.cli.config import MODES

__all__ = ["run_mode"]


def run_mode(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Any:
    """Run the mode named by ``cfg.mode`` (``mode=help`` never reaches here: it makes no run directory).

    Raises:
        ValueError: an unknown mode, or ``mode=help``.
    """
    mode = MODES.get(cfg.mode)
    if mode is None or mode.run is None:
        raise ValueError(f"Unknown mode `{cfg.mode}`; expected one of {sorted(set(MODES) - {'help'})}")
    module, function = mode.run.split(":")
    return getattr(import_module(module), function)(cfg, run_dir, overrides)
