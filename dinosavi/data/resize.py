"""The one resize of uint8 frames: training clips are made with it, and the feature store's presized
features and thumbnails are computed with it, so a stored entry is what training would have encoded.

Shapes: ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = ["resize_frames"]


def resize_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize uint8 frames, bilinear with antialiasing; frames already at ``size`` are returned as they are.

    Args:
        frames: ``(T, 3, H, W)`` uint8.
        size: ``(H', W')``, the output size.

    Returns:
        ``(T, 3, H', W')`` uint8.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return TF.resize(frames, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
