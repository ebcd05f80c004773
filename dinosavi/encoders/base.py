"""The frozen-encoder interface: patch features, CLS attention and the preprocessing that travels with them.

Shapes: ``B`` batch, ``D`` channels, ``h, w`` feature grid, ``H, W`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EncoderOutput", "FrozenEncoder", "Preprocess", "ResizeRule"]


@dataclass(frozen=True)
class ResizeRule:
    """How frames are resized before encoding.

    At most one of ``size`` (a fixed ``(H, W)``) or ``short_side`` is set. With ``short_side`` the
    short side becomes ``short_side`` and the long side keeps the aspect ratio, floored to a multiple
    of ``multiple_of`` (the patch size, or 64 as in DINO's DAVIS evaluation: 480x854 -> 480x832).
    A ViT truncates a remainder that is not a multiple of its patch size. With neither (:attr:`native`),
    frames keep their size and the right/bottom remainder past a multiple of ``multiple_of`` is cropped,
    as a ViT's patch embedding drops it (the original DINOSAVi's evaluation: 480x854 -> 480x848 at patch 8).
    """

    size: tuple[int, int] | None = None
    short_side: int | None = None
    multiple_of: int = 1

    def __post_init__(self) -> None:
        if self.size is not None and self.short_side is not None:
            raise ValueError(f"ResizeRule takes at most one of size or short_side, got {self}")
        if self.multiple_of < 1:
            raise ValueError(f"ResizeRule.multiple_of must be >= 1, got {self.multiple_of}")

    @property
    def native(self) -> bool:
        """Frames keep their size (cropped to a multiple of ``multiple_of``), no resampling."""
        return self.size is None and self.short_side is None

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(H, W)`` a ``height x width`` frame is resized (or, when :attr:`native`, cropped) to."""
        if self.size is not None:
            return self.size
        if self.short_side is None:
            m = self.multiple_of
            return max(m, height // m * m), max(m, width // m * m)
        assert self.short_side is not None
        scale = self.short_side / min(height, width)
        m = self.multiple_of

        def floor(x: float) -> int:
            return max(m, int(x + 1e-6) // m * m)

        # As DINO's DAVIS evaluation: the short side exactly, the long side floored to a multiple.
        if height <= width:
            return self.short_side, floor(width * scale)
        return floor(height * scale), self.short_side


@dataclass(frozen=True)
class Preprocess:
    """Normalisation that belongs to a set of weights: mean/std in [0, 1] units and the interpolation."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def __call__(self, frames: Tensor, rule: ResizeRule) -> Tensor:
        """Resize and normalise uint8 frames.

        Args:
            frames: ``(B, 3, H, W)`` uint8 RGB.
            rule: the resize rule.

        Returns:
            ``(B, 3, H', W')`` float32, normalised.
        """
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) uint8 frames, got {tuple(frames.shape)} {frames.dtype}")
        x = frames.float().div_(255.0)
        size = rule.target_size(frames.shape[-2], frames.shape[-1])
        if rule.native:
            x = x[..., : size[0], : size[1]]
        elif tuple(x.shape[-2:]) != size:
            antialias = self.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(x, size=size, mode=self.interpolation, antialias=antialias,
                              align_corners=False if antialias else None)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclass
class EncoderOutput:
    """What a frozen encoder returns.

    Attributes:
        features: ``(B, D, h, w)`` patch features (after the final norm for ViTs).
        cls_attention: ``(B, heads, h, w)`` last-layer CLS-token attention, or None when the encoder
            has no CLS token.
        intermediate: ``(B, D, h, w)`` per requested intermediate layer (normed block outputs); empty
            unless the encoder was built with ``layers``.
    """

    features: Tensor
    cls_attention: Tensor | None = None
    intermediate: tuple[Tensor, ...] = ()


class FrozenEncoder(nn.Module):
    """Base class of frozen backbones.

    Subclasses set ``feature_dim``, ``patch_size`` (the feature stride in pixels), ``num_heads``
    (None without CLS attention), ``preprocess`` and ``default_resize``, and implement ``forward`` on
    normalised images. ``encode`` is the public entry point: uint8 frames in, features out. ``name`` is
    the registry name it was built from (``encoder.name``), for logs and reports.
    """

    name: str = "encoder"
    feature_dim: int
    patch_size: int
    num_heads: int | None
    preprocess: Preprocess
    default_resize: ResizeRule

    def freeze(self) -> FrozenEncoder:
        """Put the encoder in eval mode with no gradients; returns self."""
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> FrozenEncoder:
        # Frozen: batch norm statistics and dropout never switch to training behaviour.
        return super().train(False)

    def forward(self, images: Tensor) -> EncoderOutput:
        """Encode normalised images ``(B, 3, H, W)``; ``H, W`` multiples of ``patch_size``."""
        raise NotImplementedError

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The feature grid ``(h, w)`` for a ``height x width`` input."""
        return math.ceil(height / self.patch_size), math.ceil(width / self.patch_size)

    @torch.inference_mode()
    def encode(self, frames: Tensor, rule: ResizeRule | None = None, batch_size: int = 64) -> EncoderOutput:
        """Preprocess and encode uint8 frames in batches on the encoder's device.

        Args:
            frames: ``(B, 3, H, W)`` uint8, on any device.
            rule: resize rule; ``default_resize`` when None.
            batch_size: frames per forward pass.

        Returns:
            features ``(B, D, h, w)`` float32 and, when available, CLS attention ``(B, heads, h, w)``
            and intermediate layers ``(B, D, h, w)``.
        """
        rule = rule or self.default_resize
        device = next(self.parameters()).device
        feats, attns, inters = [], [], []
        for chunk in frames.split(batch_size):
            out = self(self.preprocess(chunk.to(device, non_blocking=True), rule))
            feats.append(out.features.float())
            if out.cls_attention is not None:
                attns.append(out.cls_attention.float())
            inters.append([t.float() for t in out.intermediate])
        intermediate = tuple(torch.cat(layer) for layer in zip(*inters))
        return EncoderOutput(torch.cat(feats), torch.cat(attns) if attns else None, intermediate)
