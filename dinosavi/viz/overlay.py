"""Overlays of label maps on frames, and slot-mask grids for TensorBoard.

Shapes: ``S`` slots, ``H, W`` pixels, ``h, w`` feature grid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mask_grid", "overlay"]


def overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend a label map over a frame, with 1-pixel object contours.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` integer object ids (0 background, left unpainted).
        palette: ``(256, 3)`` uint8 colours by id.
        opacity: weight of the colour inside objects.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    if frame.shape[:2] != labels.shape:
        raise ValueError(f"frame {frame.shape[:2]} and labels {labels.shape} differ in size")
    colour = palette[labels.astype(np.int64) % 256].astype(np.float32)
    fg = (labels > 0)[..., None]
    out = np.where(fg, (1 - opacity) * frame.astype(np.float32) + opacity * colour, frame.astype(np.float32))
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    out[edge] = colour[edge] * 0.6
    return out.round().clip(0, 255).astype(np.uint8)


def mask_grid(frame: Tensor, masks: Tensor) -> Tensor:
    """A row image: the frame, then each slot's mask multiplied onto it.

    Args:
        frame: ``(3, H, W)`` uint8.
        masks: ``(S, h, w)`` in [0, 1].

    Returns:
        ``(3, H, (S + 1) * W)`` uint8, for ``SummaryWriter.add_image``.
    """
    frame = frame.detach().cpu()
    up = F.interpolate(masks.detach().float().cpu()[:, None], size=frame.shape[-2:], mode="bilinear",
                       align_corners=False)
    tiles = [frame.float()] + [frame.float() * m for m in up]
    return torch.cat(tiles, dim=-1).round().clamp(0, 255).to(torch.uint8)
