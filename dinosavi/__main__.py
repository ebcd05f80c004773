"""Hydra entry point: ``python -m dinosavi mode=<name> key=value ...``; dispatches on ``mode``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dinosavi.config import MODES, register_configs

log = logging.getLogger("dinosavi")

# modes that never touch torch (scoring PNGs with the compiled kernel): seeding it would import it
TORCH_FREE_MODES = ("score",)

register_configs()


@hydra.main(config_path="conf", config_name="main", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the mode named by ``cfg.mode`` in the run directory Hydra made."""
    from dinosavi.utils import seed_everything  # numpy: not needed for mode=help

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    seed_everything(cfg.seed, torch_rng=cfg.mode not in TORCH_FREE_MODES)
    preset = f"the checkpoint's ({cfg.resume})" if cfg.resume else cfg.preset  # resume keeps the saved recipe
    log.info("mode=%s preset=%s seed=%d run dir=%s", cfg.mode, preset, cfg.seed, run_dir)
    if cfg.mode == "train":
        from dinosavi.modes import run_train

        run_train(cfg, run_dir, overrides)
    elif cfg.mode == "eval":
        from dinosavi.modes import run_eval

        run_eval(cfg, run_dir, overrides)
    elif cfg.mode == "cache":
        from dinosavi.build import build_encoder, resolve_device
        from dinosavi.features.cache import run_cache

        run_cache(cfg, run_dir, build_encoder(cfg.encoder).to(resolve_device(cfg.device)))
    elif cfg.mode == "segment" or (cfg.mode == "propagate" and cfg.input):
        from dinosavi.modes import run_segment

        run_segment(cfg, run_dir, overrides)
    elif cfg.mode == "propagate":
        from dinosavi.modes import run_propagate

        run_propagate(cfg, run_dir)
    elif cfg.mode == "score":
        from dinosavi.evaluation.score import run_score

        run_score(cfg)
    elif cfg.mode == "convert":
        from dinosavi.modes import run_convert

        run_convert(cfg, run_dir, overrides)
    elif cfg.mode == "demo":
        from dinosavi.modes import run_demo

        run_demo(cfg, run_dir, overrides)
    else:
        raise ValueError(f"Unknown mode `{cfg.mode}`; expected one of {sorted(MODES)}")


def cli() -> None:
    """``mode=help``, or no ``mode=`` (``python -m dinosavi seed=1``), prints help without making a run
    directory; else Hydra runs (also for Hydra's own flags such as ``--cfg job``)."""
    args = sys.argv[1:]
    sets_mode = any(a.split("=", 1)[0].lstrip("+~") == "mode" for a in args)
    if "mode=help" in args or not (sets_mode or any(a.startswith("-") for a in args)):
        from dinosavi.modes import print_help

        print_help([a for a in args if a != "mode=help"])
        return
    main()


if __name__ == "__main__":
    cli()
