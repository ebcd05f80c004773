"""Slots from first-frame regions: SAVi's conditional initialisation, trained without labels.

SAVi (Kipf et al., ICLR 2022) starts its slots from first-frame cues (boxes or masks) through a small
encoder and trains that path with ground-truth cues. :class:`MaskConditioner` takes region masks instead:
the slot-attention inputs of the first frame are averaged over each region and a small MLP maps the mean
to an initial slot; learned Gaussian noise is added so that several slots given one region start apart.

Training needs no labels: some clips start from regions of their own first frame (k-means of the frozen
features, :func:`dinosavi.models.regions.kmeans_regions`, or the model's own attention from a free pass),
the others from random slots. Lock-on gives the first-frame object masks to the same initialiser and
splits the background into regions the way training made them.

Shapes: ``B`` batch, ``S`` slots, ``N`` tokens, ``C`` token channels, ``D`` slot size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MaskConditioner"]


class MaskConditioner(nn.Module):
    """Region masks of a frame -> initial slots: MLP of the mask-averaged tokens, plus learned noise.

    Args:
        input_dim: channels ``C`` of the slot-attention inputs.
        slot_dim: size ``D`` of a slot.
        hidden_dim: hidden size of the MLP.
    """

    def __init__(self, input_dim: int, slot_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.slot_dim = slot_dim
        self.norm = nn.LayerNorm(input_dim)
        self.mlp = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, slot_dim))
        self.log_sigma = nn.Parameter(torch.full((1, 1, slot_dim), -2.0))

    def forward(self, tokens: Tensor, regions: Tensor, generator: torch.Generator | None = None,
                noise: Tensor | None = None) -> Tensor:
        """Initial slots of the regions.

        Args:
            tokens: ``(B, N, C)`` slot-attention inputs of the frame.
            regions: ``(B, S, N)`` non-negative region weights (bool masks are fine); an empty region gets
                the mean of all tokens.
            generator: random source of the noise (the global one when None).
            noise: ``(B, S, D)`` standard-normal noise to use instead of a draw.

        Returns:
            ``(B, S, D)`` slots.
        """
        weights = regions.to(tokens.dtype)
        mass = weights.sum(-1, keepdim=True)
        weights = torch.where(mass > 0, weights / mass.clamp(min=1e-12), 1.0 / weights.shape[-1])
        pooled = torch.einsum("bsn,bnc->bsc", weights, tokens)
        if noise is None:
            noise_device = generator.device if generator is not None else tokens.device
            noise = torch.randn(*pooled.shape[:2], self.slot_dim, generator=generator, device=noise_device)
        return self.mlp(self.norm(pooled)) + self.log_sigma.exp() * noise.to(tokens.device, tokens.dtype)
