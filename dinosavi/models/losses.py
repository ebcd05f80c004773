"""Training objectives, as pure functions.

Shapes: ``B`` batch, ``T`` frames, ``P`` time steps, ``D`` feature channels, ``h, w`` feature grid, ``S`` slots,
``C`` slot size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["normalize_target", "region_tracking_loss", "slot_contrast_loss", "temporal_reconstruction_loss"]


def normalize_target(features: Tensor) -> Tensor:
    """Layer-normalise frozen features over channels: ``(B, D, h, w)`` -> ``(B, D, h, w)``."""
    return F.layer_norm(features.movedim(1, -1), features.shape[1:2]).movedim(-1, 1)


def temporal_reconstruction_loss(
    prediction: Tensor, features: Tensor, time_steps: Sequence[int], normalized: bool = True
) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over time steps of the MSE between predicted and (layer-normalised) future features.

    Args:
        prediction: ``(P, B, T', D, h, w)``; ``prediction[p, :, t]`` predicts frame ``t + time_steps[p]``.
        features: ``(B, T, D, h, w)`` frozen features, ``T >= T' + max(time_steps)``.
        time_steps: the ``P`` frame offsets.
        normalized: layer-normalise the features over channels (:func:`normalize_target`); False compares
            with them as they are (the original DINOSAVi, which normalises the prediction instead).

    Returns:
        The scalar loss (fp32) and the detached per-step losses named ``loss/t+k``.
    """
    bound = prediction.shape[2]
    target = features.float()
    if normalized:
        target = normalize_target(target.flatten(0, 1)).unflatten(0, features.shape[:2])
    losses = torch.stack([
        F.mse_loss(prediction[p].float(), target[:, k : k + bound]) for p, k in enumerate(time_steps)
    ])
    logs = {f"loss/t+{k}": loss.detach() for k, loss in zip(time_steps, losses)}
    return losses.mean(), logs


def slot_contrast_loss(slots: Tensor, temperature: float = 0.1) -> Tensor:
    """SlotContrast's slot-slot contrastive loss (Manasyan et al., CVPR 2025): a slot at frame ``t`` must pick
    itself at frame ``t + 1`` out of every slot of the batch at ``t + 1``.

    For each pair of consecutive frames the ``B * S`` L2-normalised slots of frame ``t`` are compared with
    those of ``t + 1`` by cosine similarity over ``temperature``; the cross-entropy takes the same slot of
    the same clip as the positive and every other slot of the batch (its own clip's and the other clips')
    as negatives.

    Args:
        slots: ``(B, T, S, C)`` slots of ``T >= 2`` consecutive frames.
        temperature: softmax temperature, ``> 0``.

    Returns:
        The scalar loss, the mean over the ``T - 1`` frame pairs and the ``B * S`` slots.

    Raises:
        ValueError: fewer than two frames or a temperature <= 0.
    """
    B, T, S, _ = slots.shape
    if T < 2 or temperature <= 0:
        raise ValueError(f"slot_contrast_loss needs T >= 2 frames and temperature > 0, got T={T}, {temperature}")
    z = F.normalize(slots.float(), dim=-1).transpose(0, 1).flatten(1, 2)  # (T, B*S, C)
    logits = torch.einsum("tic,tjc->tij", z[:-1], z[1:]) / temperature  # (T-1, B*S, B*S)
    target = torch.arange(B * S, device=slots.device).expand(T - 1, -1)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def region_tracking_loss(attention: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of slot attention to target regions: slot ``s`` should win the patches of region ``s``.

    Args:
        attention: ``(B, T, S, N)`` slot attention, a distribution over slots at every patch.
        targets: ``(B, T, S, N)`` target regions (soft labels over slots at every patch), no gradient.

    Returns:
        The scalar loss: ``-sum_s targets log attention``, averaged over patches and frames.
    """
    log_attention = attention.float().clamp_min(1e-8).log()
    return -(targets.float() * log_attention).sum(2).mean()
