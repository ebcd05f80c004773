"""Background from the encoder's CLS attention, and the slot masks that split slots into bg/fg groups.

Shapes: ``B`` batch, ``T`` frames, ``S`` slots, ``h, w`` feature grid, ``N = h*w``.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce, repeat
from torch import Tensor

__all__ = ["BGFG_STRATEGIES", "background_mask", "bgfg_slot_masks"]

BGFG_STRATEGIES = ("initial", "always")


def background_mask(cls_attention: Tensor) -> Tensor:
    """Background patches from CLS attention, weighting heads as FOUND does (Siméoni et al., 2023).

    A head's count is the number of its patches whose attention exceeds the mean over all heads and
    patches; a head weighs ``log(sum of counts / its count)``, so heads that attend to few patches
    (focused on objects) weigh more. The weighted heads are averaged; background is where that map is
    below its mean.

    Args:
        cls_attention: ``(B, heads, h, w)`` CLS-token attention.

    Returns:
        ``(B, h, w)`` bool, True for background.
    """
    attn = rearrange(cls_attention.float(), "b n h w -> b n (h w)")
    counts = (attn > attn.mean(dim=(1, 2), keepdim=True)).sum(-1).clamp(min=1).float()  # (B, heads)
    weights = (counts.sum(-1, keepdim=True) / counts).log()  # (B, heads)
    fused = reduce(attn * weights[..., None], "b n p -> b p", "mean")
    background = fused < fused.mean(-1, keepdim=True)
    return rearrange(background, "b (h w) -> b h w", h=cls_attention.shape[-2])


def bgfg_slot_masks(background: Tensor, num_bg: int, num_fg: int, strategy: str) -> Tensor:
    """Attention masks giving the first ``num_bg`` slots the background and the rest the foreground.

    Args:
        background: ``(B, T, h, w)`` bool, True for background.
        num_bg: background slots (first in the slot order).
        num_fg: foreground slots.
        strategy: ``always`` restricts slots at every frame; ``initial`` only at the first frame (later
            frames are unrestricted).

    Returns:
        ``(B, T, S, N)`` bool, True where slot ``s`` may attend to patch ``n``; ``S = num_bg + num_fg``.
    """
    if strategy not in BGFG_STRATEGIES:
        raise ValueError(f"Unknown bgfg strategy `{strategy}`; expected one of {BGFG_STRATEGIES}")
    masks = torch.cat([
        repeat(background, "b t h w -> b t s (h w)", s=num_bg),
        repeat(~background, "b t h w -> b t s (h w)", s=num_fg),
    ], dim=2)
    if strategy == "initial":
        masks[:, 1:] = True
    return masks
