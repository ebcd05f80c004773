"""Numeric precisions by name (``fp32``, ``bf16``, ``fp16``), for training's autocast and the ViTs'.

Torch is imported only when a dtype is asked for, so the config schema can name the precisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "check_precision", "precision_dtype"]

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(name: str, key: str = "precision") -> None:
    """Raise ``ValueError`` naming ``key`` unless ``name`` is one of :data:`PRECISIONS`."""
    if name not in PRECISIONS:
        raise ValueError(f"Unknown {key} `{name}`; expected one of {sorted(PRECISIONS)}")


def precision_dtype(name: str) -> torch.dtype:
    """The torch dtype of a precision name."""
    import torch

    check_precision(name)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
