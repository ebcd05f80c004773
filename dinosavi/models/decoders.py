"""Slot decoders: each slot is decoded to a feature map plus an alpha logit, blended by a softmax over slots.

Shapes: ``B`` batch, ``S`` slots, ``D`` feature channels, ``h, w`` feature grid, ``N = h*w``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dinosavi.models.pos_embed import PositionalEncoding

__all__ = ["AlphaDecoder", "DecoderOutput"]


@dataclass
class DecoderOutput:
    """Decoded slots.

    Attributes:
        reconstruction: ``(B, D, h, w)`` alpha-blended features.
        alpha: ``(B, S, h, w)`` blending weights, softmax over slots.
    """

    reconstruction: Tensor
    alpha: Tensor


class AlphaDecoder(nn.Module):
    """Spatial-broadcast decoder (Watters et al., 2019) with alpha blending (Locatello et al., 2020).

    Every slot is broadcast to the grid, concatenated with the positional encoding and passed through
    ``depth`` convolutions (ReLU between); the last gives ``D`` features and one alpha logit.
    With ``kernel_size == 1`` the convolutions are per-token linear maps and run as matrix products,
    the first one split into a per-slot and a per-position term so the broadcast is never built.

    Args:
        slot_dim: size of a slot.
        out_dim: feature channels ``D`` to reconstruct.
        depth: number of convolutions, ``>= 1``.
        kernel_size: odd kernel size.
        hidden_dim: channels of the hidden convolutions.
        pos_embed: the positional encoding.
    """

    def __init__(
        self,
        slot_dim: int,
        out_dim: int,
        depth: int,
        kernel_size: int,
        hidden_dim: int,
        pos_embed: PositionalEncoding,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}")
        if kernel_size % 2 != 1:
            raise ValueError(f"decoder kernel_size must be odd, got {kernel_size}")
        self.slot_dim = slot_dim
        self.kernel_size = kernel_size
        # False runs 1x1 decoders through the generic broadcast + convolution path (equivalence tests,
        # benchmark baseline); the results agree to float rounding.
        self.pointwise_fast_path = True
        self.pos_embed = pos_embed
        dims = [slot_dim + pos_embed.dim] + [hidden_dim] * (depth - 1) + [out_dim + 1]
        self.convs: list[nn.Conv2d] = nn.ModuleList(  # type: ignore[assignment]
            nn.Conv2d(i, o, kernel_size, padding=kernel_size // 2) for i, o in itertools.pairwise(dims)
        )

    def forward(self, slots: Tensor, size: tuple[int, int]) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` on a grid of ``size = (h, w)``."""
        B, S, _ = slots.shape
        h, w = size
        pe = self.pos_embed(h, w, slots.device).to(slots.dtype)  # (P, h, w)
        if self.kernel_size == 1 and self.pointwise_fast_path:
            x = self._decode_pointwise(slots, pe)  # (B, S, N, D+1)
        else:
            grid = slots[..., None, None].expand(B, S, self.slot_dim, h, w)
            x = torch.cat([grid, pe.expand(B, S, *pe.shape)], dim=2).flatten(0, 1)
            for i, conv in enumerate(self.convs):
                x = conv(x)
                if i < len(self.convs) - 1:
                    x = F.relu(x)
            x = rearrange(x, "(b s) c h w -> b s (h w) c", b=B)
        alpha = x[..., -1].softmax(dim=1)  # (B, S, N)
        features = torch.einsum("bsn,bsnd->bnd", alpha, x[..., :-1])
        return DecoderOutput(
            reconstruction=rearrange(features, "b (h w) d -> b d h w", h=h),
            alpha=rearrange(alpha, "b s (h w) -> b s h w", h=h),
        )

    def _decode_pointwise(self, slots: Tensor, pe: Tensor) -> Tensor:
        """1x1 decoder as matrix products: ``(B, S, slot_dim)`` -> ``(B, S, N, D+1)``."""
        first = self.convs[0]
        weight = first.weight.flatten(1)  # (C, slot_dim + P)
        per_slot = F.linear(slots, weight[:, : self.slot_dim], first.bias)  # (B, S, C)
        per_pos = F.linear(rearrange(pe, "p h w -> (h w) p"), weight[:, self.slot_dim :])  # (N, C)
        x = per_slot[:, :, None, :] + per_pos
        for conv in self.convs[1:]:
            x = F.linear(F.relu(x), conv.weight.flatten(1), conv.bias)
        return x
