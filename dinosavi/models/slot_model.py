"""DINOSAVi: the per-frame DINOSAUR modules in a loop over time, trained to predict present and future features.

At the first frame slots are sampled and bound with ``ini_iters`` slot-attention iterations; each later
frame starts from the predictor's output of the previous frame's slots and binds them with ``num_iters``
iterations. With predictor ``none`` every frame starts from fresh slots (``ini_iters`` iterations):
that is DINOSAUR, computed for all frames in one batched pass. For each time step ``k`` of
``time_steps`` a time decoder maps the slots of frame ``t`` to slots that decode frame ``t+k``; all
frames x time steps go through the decoder in one batched call. The loss is the mean over time steps
of the MSE to the layer-normalised frozen features.

Shapes: ``B`` batch, ``T`` frames, ``S`` slots, ``D`` feature channels, ``h, w`` feature grid,
``N = h*w``, ``P`` time steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from dinosavi.losses import temporal_reconstruction_loss
from dinosavi.models.background import background_mask, bgfg_slot_masks
from dinosavi.models.decoders import DecoderOutput, SlotDecoder
from dinosavi.models.dinosaur import Dinosaur
from dinosavi.models.predictor import TimeDecoder

__all__ = ["ClipLoss", "SlotModel"]


@dataclass
class ClipLoss:
    """Training objective on a batch of clips.

    Attributes:
        loss: scalar to minimise.
        logs: named scalars for TensorBoard (``loss/t+0``, ``loss/t+1``, ...).
        alpha: ``(B, T', S, h, w)`` decoder masks of the present frame for the ``T'`` bound frames.
    """

    loss: Tensor
    logs: dict[str, Tensor]
    alpha: Tensor


class SlotModel(Dinosaur):
    """Slots carried through time by a predictor, decoded to the present and future frames.

    Args:
        feature_dim: channels ``D`` of the frozen features.
        slot_dim: size of a slot.
        hidden_dim: hidden size of the feature MLP and of the slot MLP.
        num_slots: slot count, or ``[bg, fg]`` with background/foreground groups.
        num_iters: slot-attention iterations on frames after the first.
        decoder: decodes slots to ``feature_dim`` channels.
        ini_iters: iterations on freshly sampled slots; ``num_iters`` when None.
        predictor: maps slots of frame ``t`` to the initial slots of ``t+1``; None samples fresh slots
            every frame (DINOSAUR).
        time_steps: the frame offsets ``k >= 0`` the slots of frame ``t`` are decoded to.
        time_decoders: one per time step; identity when None.
        bgfg_strategy: None (no groups), or ``initial``/``always``: with ``num_slots = [bg, fg]``, the
            background slots may attend only to background patches (from CLS attention), the others
            only to the rest, at the first frame or at every frame.
    """

    def __init__(
        self,
        feature_dim: int,
        slot_dim: int,
        hidden_dim: int,
        num_slots: int | Sequence[int],
        num_iters: int,
        decoder: SlotDecoder,
        *,
        ini_iters: int | None = None,
        predictor: nn.Module | None = None,
        time_steps: Sequence[int] = (0,),
        time_decoders: Sequence[TimeDecoder] | None = None,
        bgfg_strategy: str | None = None,
    ) -> None:
        if bgfg_strategy is not None and (isinstance(num_slots, int) or len(num_slots) != 2):
            raise ValueError(f"bgfg slot groups need num_slots = [bg, fg], got {num_slots}")
        if bgfg_strategy is None and not isinstance(num_slots, int):
            raise ValueError(f"num_slots = {list(num_slots)} ([bg, fg]) needs bgfg enabled; else give one integer")
        super().__init__(feature_dim, slot_dim, hidden_dim, num_slots, num_iters, decoder,
                         num_groups=0 if bgfg_strategy is None else 2)
        if not time_steps or any(k < 0 for k in time_steps) or len(set(time_steps)) != len(time_steps):
            raise ValueError(f"time_steps must be distinct offsets >= 0, got {list(time_steps)}")
        self.ini_iters = num_iters if ini_iters is None else ini_iters
        self.predictor = predictor
        self.time_steps = tuple(int(k) for k in time_steps)
        if time_decoders is None:
            time_decoders = [TimeDecoder("identity", slot_dim) for _ in self.time_steps]
        if len(time_decoders) != len(self.time_steps):
            raise ValueError(f"need one time decoder per time step {self.time_steps}, got {len(time_decoders)}")
        self.time_decoders: list[TimeDecoder] = nn.ModuleList(time_decoders)  # type: ignore[assignment]
        self.bgfg_strategy = bgfg_strategy
        # the time decoder that gives the present frame's masks (step 0, else the nearest step)
        self.present = self.time_steps.index(min(self.time_steps))

    def propagate(self, slots: Tensor) -> Tensor:
        """Slots ``(B, S, slot_dim)`` of frame ``t`` -> initial slots of ``t+1`` (unchanged without predictor)."""
        return slots if self.predictor is None else self.predictor(slots)

    def decode(self, slots: Tensor, size: tuple[int, int]) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` to the present frame on a grid of ``size = (h, w)``."""
        return self.decoder(self.time_decoders[self.present](slots), size)

    def clip_loss(
        self, features: Tensor, cls_attention: Tensor | None = None, shard: tuple[int, int] = (0, 1)
    ) -> ClipLoss:
        """The training objective on clips.

        Args:
            features: ``(B, T, D, h, w)`` frozen features.
            cls_attention: ``(B, T, heads, h, w)`` CLS attention; needed with bgfg groups.
            shard: ``(rank, world_size)``: this batch is shard ``rank`` of ``world_size`` equal shards of
                a global batch. Initial slots are drawn for the global batch and sliced, so the result
                does not depend on how the global batch is split over processes.

        Returns:
            The loss (mean over time steps), per-step logs and the present frame's alpha masks of the
            ``T' = T - max(time_steps)`` frames whose future is in the clip.
        """
        B, T, _, h, w = features.shape
        bound = T - max(self.time_steps)
        if bound < 1:
            raise ValueError(
                f"clips of {T} frames are too short for time_steps={list(self.time_steps)}; "
                f"data.frames_per_clip must be at least {max(self.time_steps) + 1}"
            )
        inputs = self.input_mlp(rearrange(features[:, :bound], "b t d h w -> b t (h w) d"))  # (B, T', N, C)
        masks = self._bgfg_masks(cls_attention, bound) if self.bgfg_strategy is not None else None
        slots = self._bind_clip(inputs, masks, shard)  # (B, T', S, C)
        P = len(self.time_steps)
        future = torch.stack([td(rearrange(slots, "b t s c -> (b t) s c")) for td in self.time_decoders])
        out = self.decoder(rearrange(future, "p bt s c -> (p bt) s c"), (h, w))
        prediction = rearrange(out.reconstruction, "(p b t) d h w -> p b t d h w", p=P, b=B)
        loss, logs = temporal_reconstruction_loss(prediction, features, self.time_steps)
        alpha = rearrange(out.alpha, "(p b t) s h w -> p b t s h w", p=P, b=B)[self.present]
        return ClipLoss(loss, logs, alpha)

    def _init_shard(self, batch_size: int, frames: int, shard: tuple[int, int]) -> Tensor:
        """Initial slots ``(batch_size, frames, S, C)``: this shard's part of the global batch's draw."""
        rank, world = shard
        init = self.init_slots(batch_size * world * frames)
        init = rearrange(init, "(b t) s c -> b t s c", t=frames)
        return init[rank * batch_size : (rank + 1) * batch_size]

    def _bind_clip(self, inputs: Tensor, masks: Tensor | None, shard: tuple[int, int]) -> Tensor:
        """Slots of every frame: ``inputs (B, T', N, C)``, ``masks (B, T', S, N)`` -> ``(B, T', S, C)``."""
        B, T = inputs.shape[:2]
        if self.predictor is None:  # fresh slots every frame: all frames at once
            init = self._init_shard(B, T, shard)
            flat_masks = None if masks is None else rearrange(masks, "b t s n -> (b t) s n")
            out = self.slot_attention(
                rearrange(inputs, "b t n c -> (b t) n c"), rearrange(init, "b t s c -> (b t) s c"),
                self.ini_iters, flat_masks,
            )
            return rearrange(out.slots, "(b t) s c -> b t s c", b=B)
        slots = self._init_shard(B, 1, shard)[:, 0]
        per_frame = []
        for t in range(T):
            if t > 0:
                slots = self.predictor(slots)
            iters = self.ini_iters if t == 0 else self.num_iters
            slots = self.slot_attention(inputs[:, t], slots, iters, None if masks is None else masks[:, t]).slots
            per_frame.append(slots)
        return torch.stack(per_frame, dim=1)

    def _bgfg_masks(self, cls_attention: Tensor | None, frames: int) -> Tensor:
        """``(B, T', S, N)`` bgfg attention masks from ``cls_attention (B, T, heads, h, w)``."""
        if cls_attention is None:
            raise ValueError("bgfg slot groups need the encoder's CLS attention; this encoder gives none")
        B = cls_attention.shape[0]
        background = background_mask(rearrange(cls_attention[:, :frames], "b t n h w -> (b t) n h w"))
        assert self.bgfg_strategy is not None and not isinstance(self.num_slots, int)
        num_bg, num_fg = self.num_slots
        return bgfg_slot_masks(rearrange(background, "(b t) h w -> b t h w", b=B), num_bg, num_fg,
                               self.bgfg_strategy)
