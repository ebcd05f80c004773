"""Training objectives, as pure functions.

Shapes: ``B`` batch, ``D`` feature channels, ``h, w`` feature grid.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["feature_reconstruction_loss", "normalize_target"]


def normalize_target(features: Tensor) -> Tensor:
    """Layer-normalise frozen features over channels: ``(B, D, h, w)`` -> ``(B, D, h, w)``."""
    return F.layer_norm(features.movedim(1, -1), features.shape[1:2]).movedim(-1, 1)


def feature_reconstruction_loss(prediction: Tensor, features: Tensor) -> Tensor:
    """DINOSAUR objective: MSE between predicted and layer-normalised frozen features.

    Args:
        prediction: ``(B, D, h, w)`` decoded features.
        features: ``(B, D, h, w)`` frozen encoder features (normalised here).

    Returns:
        Scalar mean squared error.
    """
    return F.mse_loss(prediction, normalize_target(features.to(prediction.dtype)))
