"""Overlays of label maps on frames, and slot-mask grids for TensorBoard.

Shapes: ``S`` slots, ``H, W`` pixels, ``h, w`` feature grid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mask_grid", "overlay", "stretch_maps"]


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


def stretch_maps(masks: Tensor) -> Tensor:
    """Each map stretched to its own range, ``(m - min) / (max - min)``, so that its darkest patch is black
    and its brightest shows the frame as it is: slot masks of a weak model, all near ``1 / S``, would
    otherwise multiply every frame almost to black. A flat map (range under 1e-6) is kept as it is
    (clamped to [0, 1]): it has no place to show.

    Args:
        masks: ``(S, h, w)`` (slot masks, soft labels).

    Returns:
        ``(S, h, w)`` float in [0, 1].
    """
    masks = masks.detach().float()
    low = masks.amin(dim=(-2, -1), keepdim=True)
    span = masks.amax(dim=(-2, -1), keepdim=True) - low
    flat = span < 1e-6
    return torch.where(flat, masks, (masks - low) / torch.where(flat, 1.0, span)).clamp(0, 1)


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
