"""The original DINOSAVi (github.com/Interpause/dinosavi): its checkpoints as this package's.

:func:`convert_original_checkpoint` reads an original ``.ckpt`` (:mod:`~dinosavi.original.reader`), converts its
config (:mod:`~dinosavi.original.config`), builds the model that config describes and maps the weights onto
it (:func:`~dinosavi.original.weights.original_to_dinosavi`), so ``resume=<file>.ckpt`` works wherever a
safetensors checkpoint does. The model is the original's architecture (``input_mlp=false``,
``loss_norm=prediction``, ``style=original``); there is no optimizer state: fine-tuning starts a fresh
optimizer and schedule, as the original's own resume did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import Tensor

from dinosavi.models.factory import build_model
from dinosavi.models.options import ModelConfig
from dinosavi.original.config import convert_config
from dinosavi.original.reader import OriginalCheckpoint, is_torch_file, read_original_checkpoint
from dinosavi.original.weights import original_to_dinosavi

__all__ = ["ORIGINAL_SOURCE", "ConvertedCheckpoint", "OriginalCheckpoint", "convert_original_checkpoint",
           "is_torch_file"]

ORIGINAL_SOURCE = "original-dinosavi"  # Checkpoint.extra["source"] of a converted original checkpoint


@dataclass
class ConvertedCheckpoint:
    """An original checkpoint in this package's terms (:func:`dinosavi.training.loading.load_checkpoint` makes it
    a ``Checkpoint`` at step 0).

    Attributes:
        config: the converted config sections.
        model: the weights under this package's keys.
        extra: the source, the original's epoch and its config as stored.
        path: the file read.
    """

    config: dict[str, Any]
    model: dict[str, Tensor]
    extra: dict[str, Any]
    path: Path


def convert_original_checkpoint(path: str | Path) -> ConvertedCheckpoint:
    """An original DINOSAVi ``.ckpt`` in this package's terms.

    ``config`` holds the converted sections (``preset``, ``model``, ``encoder``, ``train``, ``data`` clip
    settings, ``eval``); ``extra`` records the source, the original's epoch and its config as stored.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file, its config or its weights are not an original DINOSAVi checkpoint (the message
            names the key).
    """
    original = read_original_checkpoint(path)
    config = convert_config(original.config, original.path)
    model_cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), config["model"])
    if "model.attn.norm_in.weight" not in original.model:
        raise ValueError(f"{original.path}: `model` has no `model.attn.norm_in.weight`; not a SlotTrainer state dict")
    feature_dim = int(original.model["model.attn.norm_in.weight"].shape[0])  # the encoder's channels
    model = build_model(model_cfg, feature_dim)  # type: ignore[arg-type]
    weights = original_to_dinosavi(original.model, model)
    extra = {"source": ORIGINAL_SOURCE, "path": str(original.path), "epoch": original.epoch,
             "feature_dim": feature_dim, "original_config": original.config}
    return ConvertedCheckpoint(config=config, model=weights, extra=extra, path=Path(original.path))
