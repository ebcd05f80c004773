"""Slot decoders: slots ``(B, S, slot_dim)`` -> features ``(B, D, h, w)`` and per-slot alpha masks.

``alpha``: spatial broadcast + convolutions, alpha-blended (Locatello et al., 2020). ``mlp``: DINOSAUR's
MLP decoder, a shared per-slot MLP over tokens with a learned positional embedding added, alpha-blended.
``transformer``: learned per-patch queries cross-attend to the slots (DINOSAUR's decoder without the
autoregressive part); its alpha masks are the cross-attention weights, softmax over slots.

``mixer``: the slots are mixed at every position by given blending weights (the slot-attention masks,
``model.blend=attention``), then one shared MLP with a positional encoding decodes each position: ``S``
times cheaper than decoding every slot at every position; it has no alpha masks of its own.

``alpha`` and ``mlp`` decode every slot at every position to features plus an alpha logit; the features are
blended with the softmax of the logits over slots, or with given ``weights`` (e.g. the slot-attention
masks, ``model.blend=attention``), which then are the masks.

Shapes: ``B`` batch, ``S`` slots, ``D`` feature channels, ``h, w`` feature grid, ``N = h*w``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dinosavi.models.pos_embed import OriginalPositionalEncoding, PositionalEncoding

__all__ = [
    "DECODERS", "AlphaDecoder", "DecoderOutput", "MLPDecoder", "MixerDecoder", "SlotDecoder", "TransformerDecoder",
]

DECODERS = ("alpha", "mlp", "transformer", "mixer")


@dataclass
class DecoderOutput:
    """Decoded slots.

    Attributes:
        reconstruction: ``(B, D, h, w)`` alpha-blended features.
        alpha: ``(B, S, h, w)`` blending weights, softmax over slots.
    """

    reconstruction: Tensor
    alpha: Tensor


class SlotDecoder(nn.Module):
    """Interface of the decoders: ``forward(slots: (B, S, slot_dim), size: (h, w), weights) -> DecoderOutput``.

    ``weights``: ``(B, S, h, w)`` blending weights (summing to 1 over slots) to use instead of the decoder's
    own alpha masks; decoders that cannot take them (``blends_weights`` False) raise, decoders without
    masks of their own (``needs_weights`` True) need them.
    """

    blends_weights = True
    needs_weights = False

    def forward(self, slots: Tensor, size: tuple[int, int], weights: Tensor | None = None) -> DecoderOutput:
        raise NotImplementedError


class AlphaDecoder(SlotDecoder):
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
        pos_embed: the positional encoding (ours, or the original DINOSAVi's layout).
    """

    def __init__(
        self,
        slot_dim: int,
        out_dim: int,
        depth: int,
        kernel_size: int,
        hidden_dim: int,
        pos_embed: PositionalEncoding | OriginalPositionalEncoding,
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

    def forward(self, slots: Tensor, size: tuple[int, int], weights: Tensor | None = None) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` on a grid of ``size = (h, w)``, blended by alpha or ``weights``."""
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
        return _blend(x, size, weights)

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


def _blend(x: Tensor, size: tuple[int, int], weights: Tensor | None) -> DecoderOutput:
    """Blend per-slot outputs ``(B, S, N, D+1)`` (last channel: alpha logit) with a softmax over slots of
    the logits, or with ``weights: (B, S, h, w)``."""
    alpha = x[..., -1].softmax(dim=1) if weights is None else rearrange(weights, "b s h w -> b s (h w)")
    features = torch.einsum("bsn,bsnd->bnd", alpha, x[..., :-1])
    return DecoderOutput(
        reconstruction=rearrange(features, "b (h w) d -> b d h w", h=size[0]),
        alpha=rearrange(alpha, "b s (h w) -> b s h w", h=size[0]),
    )


class MLPDecoder(SlotDecoder):
    """DINOSAUR's MLP decoder: every slot plus a learned positional embedding, through a shared MLP.

    Each token of each slot is ``MLP(slot + pe[n])`` with ``depth`` linear layers (ReLU between) giving
    ``D`` features and one alpha logit; slots are blended by a softmax over slots. The first layer is
    split into a per-slot and a per-position term, so the ``(B, S, N, slot_dim)`` broadcast is never built.

    Args:
        slot_dim: size of a slot.
        out_dim: feature channels ``D``.
        depth: linear layers, ``>= 1``.
        hidden_dim: width of the hidden layers.
        pe_size: base grid of the learned embedding, resized bilinearly to other grids.
    """

    def __init__(self, slot_dim: int, out_dim: int, depth: int, hidden_dim: int, pe_size: tuple[int, int]) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}")
        self.pos_embed = PositionalEncoding("learnt", slot_dim, pe_size)
        dims = [slot_dim] + [hidden_dim] * (depth - 1) + [out_dim + 1]
        self.layers: list[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(i, o) for i, o in itertools.pairwise(dims)
        )

    def forward(self, slots: Tensor, size: tuple[int, int], weights: Tensor | None = None) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` on a grid of ``size = (h, w)``, blended by alpha or ``weights``."""
        pe = rearrange(self.pos_embed(*size).to(slots.dtype), "c h w -> (h w) c")  # (N, slot_dim)
        first = self.layers[0]
        x = first(slots)[:, :, None, :] + F.linear(pe, first.weight)  # (B, S, N, C)
        for layer in self.layers[1:]:
            x = layer(F.relu(x))
        return _blend(x, size, weights)


class MixerDecoder(SlotDecoder):
    """Slots mixed per position by given weights, then decoded by one shared per-position MLP.

    ``x_n = sum_s weights[s, n] slot_s``, then ``MLP(x_n, pe_n)`` (``depth`` linear layers, ReLU between, the
    positional encoding concatenated to the input) gives the ``D`` features of position ``n``. With
    near one-hot weights this is a per-slot decoder; its cost is that of decoding one slot, not ``S``.

    Args:
        slot_dim: size of a slot.
        out_dim: feature channels ``D``.
        depth: linear layers, ``>= 1``.
        hidden_dim: width of the hidden layers.
        pos_embed: the positional encoding.
    """

    needs_weights = True

    def __init__(self, slot_dim: int, out_dim: int, depth: int, hidden_dim: int,
                 pos_embed: PositionalEncoding) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}")
        self.slot_dim = slot_dim
        self.pos_embed = pos_embed
        dims = [slot_dim + pos_embed.dim] + [hidden_dim] * (depth - 1) + [out_dim]
        self.layers: list[nn.Linear] = nn.ModuleList(  # type: ignore[assignment]
            nn.Linear(i, o) for i, o in itertools.pairwise(dims)
        )

    def forward(self, slots: Tensor, size: tuple[int, int], weights: Tensor | None = None) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` mixed by ``weights: (B, S, h, w)`` on a grid of ``size = (h, w)``."""
        if weights is None:
            raise ValueError("the mixer decoder mixes slots by given weights (model.blend=attention); it has no "
                             "alpha masks of its own")
        h, w = size
        mixed = torch.einsum("bsn,bsc->bnc", rearrange(weights, "b s h w -> b s (h w)"), slots)  # (B, N, C)
        pe = rearrange(self.pos_embed(h, w, slots.device).to(slots.dtype), "p h w -> (h w) p")  # (N, P)
        first = self.layers[0]
        weight = first.weight  # (hidden, slot_dim + P): the mixed slot's columns, then the encoding's
        x = F.linear(mixed, weight[:, : self.slot_dim], first.bias) + F.linear(pe, weight[:, self.slot_dim :])
        for layer in self.layers[1:]:
            x = layer(F.relu(x))
        return DecoderOutput(reconstruction=rearrange(x, "b (h w) d -> b d h w", h=h), alpha=weights)


class TransformerDecoder(SlotDecoder):
    """Learned per-patch queries cross-attending to the slots (DINOSAUR's decoder, not autoregressive).

    ``depth`` pre-norm blocks of cross-attention (queries: patches, keys/values: slots) and an MLP,
    with residuals, then a linear map to ``D``. The patches do not attend to each other, so the cost
    is linear in ``N``. The alpha masks are the last block's attention weights averaged over heads
    (softmax over slots, as for the other decoders); the reconstruction is the transformer output.

    Args:
        slot_dim: size of a slot (the model width).
        out_dim: feature channels ``D``.
        depth: blocks, ``>= 1``.
        hidden_dim: MLP width.
        num_heads: attention heads (divides ``slot_dim``).
        pe_size: base grid of the learned queries, resized bilinearly to other grids.
    """

    def __init__(
        self, slot_dim: int, out_dim: int, depth: int, hidden_dim: int, num_heads: int, pe_size: tuple[int, int]
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"decoder depth must be >= 1, got {depth}")
        if slot_dim % num_heads:
            raise ValueError(f"transformer decoder heads ({num_heads}) must divide slot_dim ({slot_dim})")
        self.queries = PositionalEncoding("learnt", slot_dim, pe_size)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_q: list[nn.LayerNorm] = nn.ModuleList(  # type: ignore[assignment]
            nn.LayerNorm(slot_dim) for _ in range(depth)
        )
        self.attn: list[nn.MultiheadAttention] = nn.ModuleList(  # type: ignore[assignment]
            nn.MultiheadAttention(slot_dim, num_heads, batch_first=True) for _ in range(depth)
        )
        self.mlp: list[nn.Sequential] = nn.ModuleList(  # type: ignore[assignment]
            nn.Sequential(nn.LayerNorm(slot_dim), nn.Linear(slot_dim, hidden_dim), nn.ReLU(),
                          nn.Linear(hidden_dim, slot_dim))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(slot_dim), nn.Linear(slot_dim, out_dim))

    blends_weights = False

    def forward(self, slots: Tensor, size: tuple[int, int], weights: Tensor | None = None) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` on a grid of ``size = (h, w)``; it has no per-slot features to
        blend, so ``weights`` must be None."""
        if weights is not None:
            raise ValueError("the transformer decoder mixes slots by cross-attention and cannot blend by given "
                             "weights; use model.blend=alpha or decoder alpha/mlp")
        B = slots.shape[0]
        q = rearrange(self.queries(*size).to(slots.dtype), "c h w -> (h w) c").expand(B, -1, -1)  # (B, N, C)
        kv = self.norm_slots(slots)
        weights = q.new_empty(0)
        for norm, attn, mlp in zip(self.norm_q, self.attn, self.mlp):
            update, weights = attn(norm(q), kv, kv, need_weights=True, average_attn_weights=True)  # (B, N, S)
            q = q + update
            q = q + mlp(q)
        return DecoderOutput(
            reconstruction=rearrange(self.out(q), "b (h w) d -> b d h w", h=size[0]),
            alpha=rearrange(weights, "b (h w) s -> b s h w", h=size[0]),
        )
