"""Shared fixtures: the real DAVIS sample beside the checkout and a small synthetic set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DAVIS_SAMPLE = Path(os.environ.get("DINOSAVI_DAVIS_SAMPLE", REPO_ROOT.parent / "shared" / "data" / "davis-sample"))
SEED_REFERENCE = Path(os.environ.get("DINOSAVI_SEED_REFERENCE", REPO_ROOT.parent / "shared" / "seed-reference"))


@pytest.fixture(scope="session")
def davis_root() -> Path:
    """The real DAVIS-2017-layout sample (``../shared/data/davis-sample`` or $DINOSAVI_DAVIS_SAMPLE)."""
    if not (DAVIS_SAMPLE / "ImageSets").is_dir():
        raise FileNotFoundError(
            f"DAVIS sample not found at {DAVIS_SAMPLE}; set DINOSAVI_DAVIS_SAMPLE to its folder"
        )
    return DAVIS_SAMPLE


@pytest.fixture(scope="session")
def seed_reference() -> Path:
    """The golden reference of the original DINOSAVi (``../shared/seed-reference`` or $DINOSAVI_SEED_REFERENCE):
    two original ``.ckpt`` files, fixed inputs and every intermediate the original computes from them."""
    if not (SEED_REFERENCE / "outputs.safetensors").is_file():
        raise FileNotFoundError(
            f"seed reference not found at {SEED_REFERENCE}; set DINOSAVI_SEED_REFERENCE to its folder"
        )
    return SEED_REFERENCE


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """dinosavi's cache folder (the bad-file lists) in a temporary folder, for the CLI's subprocesses too:
    tests never write into the user's ``~/.cache``."""
    previous = os.environ.get("DINOSAVI_CACHE")
    os.environ["DINOSAVI_CACHE"] = str(tmp_path_factory.mktemp("dinosavi-cache"))
    yield Path(os.environ["DINOSAVI_CACHE"])
    if previous is None:
        del os.environ["DINOSAVI_CACHE"]
    else:
        os.environ["DINOSAVI_CACHE"] = previous


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

    from dinosavi.cli.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "dinosavi" / "conf"), version_base="1.3"):
        return compose("main", overrides=list(overrides))


def count_encoder_calls(encoder: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Frames passed through ``encoder.forward`` from now on, one list item per call."""
    calls: list[int] = []
    forward = encoder.forward

    def counting(images):
        calls.append(len(images))
        return forward(images)

    monkeypatch.setattr(encoder, "forward", counting)
    return calls
