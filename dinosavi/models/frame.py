"""The per-frame (image) parts of a slot model, after DINOSAUR (Seitzer et al., 2023): frozen features of one
frame become slot-attention tokens, slots bind to them, and a decoder maps slots back to features.

:class:`FrameModel` holds them; :class:`dinosavi.models.slot_model.SlotModel` contains one and is the loop over
time around it (its one ``forward``), for DINOSAUR (``predictor=none``: every frame on its own) and DINOSAVi.

Shapes: ``B`` batch, ``S`` slots, ``D`` feature channels, ``h, w`` feature grid, ``N = h*w``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from dinosavi.models.decoders import DecoderOutput, SlotDecoder
from dinosavi.models.pos_embed import grid
from dinosavi.models.slot_attention import SlotAttention, SlotInit

__all__ = ["BLENDS", "INPUT_PES", "STYLES", "FrameModel"]


INPUT_PES = ("none", "linear")
BLENDS = ("alpha", "attention")
STYLES = ("dinosavi", "original")


class FrameModel(nn.Module):
    """The per-frame parts: feature MLP (or none), slot initialisation, slot attention, slot decoder.

    Args:
        feature_dim: channels ``D`` of the frozen features.
        slot_dim: size of a slot.
        hidden_dim: hidden size of the feature MLP and of the slot MLP.
        num_slots: default slot count, an int or ``[bg, fg]`` with slot groups.
        decoder: decodes slots to ``feature_dim`` channels.
        num_groups: slot groups of the initialisation (0: one shared Gaussian).
        input_pe: ``none``, or ``linear``: a soft position embedding added to the normalised features.
        blend: what mixes the decoded slots into the reconstruction and gives the masks: ``alpha``, the
            decoder's alpha logits (DINOSAUR), or ``attention``, the slot-attention weights of the last
            iteration, so the reconstruction error reaches the grouping directly.
        input_mlp: True: a LayerNorm + MLP maps the features to ``slot_dim`` tokens before slot attention
            (DINOSAUR); False: the raw features go into slot attention, whose input LayerNorm and key/value
            projections take ``feature_dim`` channels (the original DINOSAVi).
        style: ``original`` reproduces the original DINOSAVi code's slot initialisation (per-group
            parameters and draws) and slot-attention weighted mean (``a / (sum(a) + 1e-6)``);
            ``dinosavi`` is ours.
    """

    def __init__(
        self,
        feature_dim: int,
        slot_dim: int,
        hidden_dim: int,
        num_slots: int | Sequence[int],
        decoder: SlotDecoder,
        num_groups: int = 0,
        input_pe: str = "none",
        blend: str = "alpha",
        input_mlp: bool = True,
        style: str = "dinosavi",
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"Unknown model.style `{style}`; expected one of {STYLES}")
        if input_pe not in INPUT_PES:
            raise ValueError(f"Unknown model.input_pe `{input_pe}`; expected one of {INPUT_PES}")
        if blend not in BLENDS:
            raise ValueError(f"Unknown model.blend `{blend}`; expected one of {BLENDS}")
        if blend == "alpha" and decoder.needs_weights:
            raise ValueError(f"{type(decoder).__name__} has no alpha masks of its own; it needs model.blend=attention")
        if blend == "attention" and not decoder.blends_weights:
            raise ValueError(f"model.blend=attention needs a decoder with per-slot features (alpha, mlp); "
                             f"{type(decoder).__name__} has none")
        self.blend = blend
        self.feature_dim = feature_dim
        self.num_slots = num_slots if isinstance(num_slots, int) else tuple(num_slots)
        self.style = style
        self.input_mlp = nn.Sequential(
            nn.LayerNorm(feature_dim),
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, slot_dim),
        ) if input_mlp else None
        self.input_pe = nn.Linear(4, feature_dim) if input_pe == "linear" else None
        original = style == "original"
        self.slot_init = SlotInit(slot_dim, num_groups, per_group=original)
        self.slot_attention = SlotAttention(slot_dim if input_mlp else feature_dim, slot_dim, hidden_dim,
                                            weighted_mean="original" if original else "smoothed")
        self.decoder = decoder

    def init_slots(
        self, batch_size: int, num_slots: int | Sequence[int] | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Sample ``(B, S, slot_dim)`` initial slots (``num_slots`` defaults to the model's)."""
        return self.slot_init(batch_size, self.num_slots if num_slots is None else num_slots, generator)

    def embed(self, features: Tensor) -> Tensor:
        """Slot-attention inputs of one frame: features ``(B, D, h, w)`` -> tokens ``(B, N, slot_dim)``, or the
        raw ``(B, N, D)`` features (plus the input PE, if any) without the input MLP."""
        h, w = features.shape[-2:]
        x = rearrange(features, "b d h w -> b (h w) d")
        if self.input_mlp is not None:
            x = self.input_mlp[0](x)
        if self.input_pe is not None:
            ys, xs = grid(h, w, features.device)
            coords = rearrange(torch.stack([ys, xs, -ys, -xs]), "c h w -> (h w) c").to(x.dtype)
            x = x + self.input_pe(coords)
        return x if self.input_mlp is None else self.input_mlp[1:](x)

    def decode(self, slots: Tensor, size: tuple[int, int], attention: Tensor | None = None) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` to a frame on a grid of ``size = (h, w)``; with ``blend=attention``
        the frame's ``(B, S, h, w)`` slot attention blends them."""
        return self.decoder(slots, size, self.blend_weights(attention))

    def blend_weights(self, attention: Tensor | None) -> Tensor | None:
        """What the decoder blends the decoded slots by: None (its own alpha masks) with ``blend=alpha``, else
        the slot attention ``(B, S, h, w)``."""
        if self.blend == "alpha":
            return None
        if attention is None:
            raise ValueError("a model with blend=attention decodes the present frame with its slot attention; "
                             "pass the attention of the slots")
        return attention
