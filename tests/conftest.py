"""Shared fixtures: the real DAVIS sample beside the checkout and a small synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DAVIS_SAMPLE = Path(os.environ.get("DINOSAVI_DAVIS_SAMPLE", REPO_ROOT.parent / "shared" / "data" / "davis-sample"))


@pytest.fixture(scope="session")
def davis_root() -> Path:
    """The real DAVIS-2017-layout sample (``../shared/data/davis-sample`` or $DINOSAVI_DAVIS_SAMPLE)."""
    if not (DAVIS_SAMPLE / "ImageSets").is_dir():
        raise FileNotFoundError(
            f"DAVIS sample not found at {DAVIS_SAMPLE}; set DINOSAVI_DAVIS_SAMPLE to its folder"
        )
    return DAVIS_SAMPLE


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic DAVIS-layout set: 4 videos (1 val) of 6 frames at 64x80."""
    from dinosavi.data.synthetic import SyntheticSpec, generate_synthetic

    root = tmp_path_factory.mktemp("data") / "tiny-synthetic"
    spec = SyntheticSpec(num_videos=4, num_frames=6, height=64, width=80, val_videos=1, seed=0)
    return generate_synthetic(root, spec)


def compose_config(*overrides: str):
    """The CLI's config for ``overrides``, composed without running anything."""
    from hydra import compose, initialize_config_dir

    from dinosavi.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "dinosavi" / "conf"), version_base="1.3"):
        return compose("main", overrides=list(overrides))
