"""Training objectives, as pure functions.

Shapes: ``B`` batch, ``T`` frames, ``P`` time steps, ``D`` feature channels, ``h, w`` feature grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["feature_reconstruction_loss", "normalize_target", "temporal_reconstruction_loss"]


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


def temporal_reconstruction_loss(
    prediction: Tensor, features: Tensor, time_steps: Sequence[int], normalize_target: bool = True
) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over time steps of the MSE between predicted and (layer-normalised) future features.

    Args:
        prediction: ``(P, B, T', D, h, w)``; ``prediction[p, :, t]`` predicts frame ``t + time_steps[p]``.
        features: ``(B, T, D, h, w)`` frozen features, ``T >= T' + max(time_steps)``.
        time_steps: the ``P`` frame offsets.
        normalize_target: layer-normalise the features over channels; False compares with them as they are
            (the original DINOSAVi, which normalises the prediction instead).

    Returns:
        The scalar loss (fp32) and the detached per-step losses named ``loss/t+k``.
    """
    bound = prediction.shape[2]
    target = features.float()
    if normalize_target:
        target = F.layer_norm(target.movedim(2, -1), features.shape[2:3]).movedim(-1, 2)
    losses = torch.stack([
        F.mse_loss(prediction[p].float(), target[:, k : k + bound]) for p, k in enumerate(time_steps)
    ])
    logs = {f"loss/t+{k}": loss.detach() for k, loss in zip(time_steps, losses)}
    return losses.mean(), logs
