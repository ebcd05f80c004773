"""Hydra entry point: ``python -m dinosavi mode=<name> key=value ...``; checks every value
(:mod:`dinosavi.cli.checks`, before torch is imported), seeds, then runs the mode through the dispatch table of
:mod:`dinosavi.cli.dispatch`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dinosavi.cli.checks import ConfigError, check_config
from dinosavi.cli.config import MODES, register_configs

log = logging.getLogger("dinosavi")

register_configs()


@hydra.main(config_path="conf", config_name="main", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the mode named by ``cfg.mode`` in the run directory Hydra made."""
    from dinosavi.utils import seed_everything  # numpy: not needed for mode=help

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    try:
        check_config(cfg)  # every value by key, before torch is imported
    except ConfigError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(2)
    seed_everything(cfg.seed, torch_rng=MODES[cfg.mode].torch)
    preset = f"the checkpoint's ({cfg.resume})" if cfg.resume else cfg.preset  # resume keeps the saved recipe
    log.info("mode=%s preset=%s seed=%d run dir=%s", cfg.mode, preset, cfg.seed, run_dir)
    from dinosavi.cli.dispatch import run_mode

    run_mode(cfg, run_dir, overrides)


def cli() -> None:
    """``mode=help``, or no ``mode=`` (``python -m dinosavi seed=1``), prints help without making a run
    directory; else Hydra runs (also for Hydra's own flags such as ``--cfg job``)."""
    args = sys.argv[1:]
    sets_mode = any(a.split("=", 1)[0].lstrip("+~") == "mode" for a in args)
    if "mode=help" in args or not (sets_mode or any(a.startswith("-") for a in args)):
        from dinosavi.cli.help import print_help

        print_help([a for a in args if a != "mode=help"])
        return
    main()


if __name__ == "__main__":
    cli()
