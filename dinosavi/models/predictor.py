"""What carries slots through time: the predictor between frames and the time decoders of the loss.

The predictor maps the slots bound at frame ``t`` to the initial slots of frame ``t+1`` (SAVi, Kipf
et al., 2022); ``identity`` carries them unchanged; ``none`` means slots are not carried (DINOSAUR: fresh
slots every frame). A time decoder
maps the slots of frame ``t`` to the slots that decode frame ``t+k`` for one time step ``k``.

Shapes: ``B`` batch, ``S`` slots, ``D`` slot size.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PREDICTORS", "TIME_DECODERS", "SaviPredictor", "TimeDecoder"]

PREDICTORS = ("savi", "identity", "none")
TIME_DECODERS = ("linear", "attn", "identity")


class SaviPredictor(nn.Module):
    """SAVi's predictor: slots attend to each other, then a per-slot MLP; residuals and post-norms.

    ``slots = LN(slots + MHSA(slots))``, then ``slots = LN(slots + ReLU(Linear(slots)))`` (the one-layer
    MLP of the original DINOSAVi code).

    Args:
        slot_dim: size of a slot.
        num_heads: attention heads (divides ``slot_dim``).
    """

    def __init__(self, slot_dim: int, num_heads: int = 4) -> None:
        super().__init__()
        if slot_dim % num_heads:
            raise ValueError(f"predictor heads ({num_heads}) must divide slot_dim ({slot_dim})")
        self.attn = nn.MultiheadAttention(slot_dim, num_heads, batch_first=True)
        self.mlp = nn.Linear(slot_dim, slot_dim)
        self.norm_attn = nn.LayerNorm(slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim)

    def forward(self, slots: Tensor) -> Tensor:
        """``(B, S, D)`` slots of frame ``t`` -> ``(B, S, D)`` initial slots of frame ``t+1``."""
        slots = self.norm_attn(slots + self.attn(slots, slots, slots, need_weights=False)[0])
        return self.norm_mlp(slots + self.mlp(slots).relu())


class TimeDecoder(nn.Module):
    """Slots of frame ``t`` -> slots that decode frame ``t+k``, for one time step ``k``.

    Args:
        kind: ``linear`` (a linear map), ``attn`` (self-attention between slots, its output taken
            as is, without residual, as in the original) or ``identity``.
        slot_dim: size of a slot.
        num_heads: heads of ``attn``.
    """

    def __init__(self, kind: str, slot_dim: int, num_heads: int = 4) -> None:
        super().__init__()
        if kind not in TIME_DECODERS:
            raise ValueError(f"Unknown time decoder `{kind}`; expected one of {TIME_DECODERS}")
        self.kind = kind
        self.layer: nn.Module
        if kind == "linear":
            self.layer = nn.Linear(slot_dim, slot_dim)
        elif kind == "attn":
            if slot_dim % num_heads:
                raise ValueError(f"time decoder heads ({num_heads}) must divide slot_dim ({slot_dim})")
            self.layer = nn.MultiheadAttention(slot_dim, num_heads, batch_first=True)
        else:
            self.layer = nn.Identity()

    def forward(self, slots: Tensor) -> Tensor:
        """``(B, S, D)`` -> ``(B, S, D)``."""
        if self.kind == "attn":
            return self.layer(slots, slots, slots, need_weights=False)[0]
        return self.layer(slots)
