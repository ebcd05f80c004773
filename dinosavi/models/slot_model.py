"""DINOSAVi: the per-frame parts of a slot model (:class:`~dinosavi.models.frame.FrameModel`) in a loop over
time, trained to predict present and future features.

:meth:`SlotModel.forward` is the one forward: training (:meth:`SlotModel.clip_loss`, which only adds the losses)
and every inference path (:func:`dinosavi.evaluation.vos.segment_sequence`) call it, on a clip or on a stream of
frames, and it runs :meth:`SlotModel.scan`, the one loop over frames, so a model does at frame ``t`` of a long
evaluation what it was trained to do at frame ``t`` of a clip. At the first frame slots are sampled (or given,
or made from first-frame masks by the conditioner) and bound with ``ini_iters`` slot-attention iterations. At
each later frame:

- predictor ``savi`` or ``identity``: the previous frame's slots, carried through the predictor, are bound
  with ``num_iters`` iterations (SAVi, Kipf et al., 2022);
- predictor ``none`` (DINOSAUR): fresh slots are sampled and bound with ``ini_iters`` iterations, exactly
  as at the first frame; frames are independent, so a clip binds all its frames in one batched call of the
  same loop. Slot identity across frames then comes from matching (:mod:`dinosavi.evaluation.tracking`).

Conditioned lock-on (``condition``): a :class:`~dinosavi.models.conditioning.MaskConditioner` turns
first-frame region masks into initial slots (SAVi's conditional initialisation). Training needs no labels:
a share ``condition_share`` of the clips starts from regions of its own first frame — ``kmeans`` regions of
the frozen features, or the ``attention`` regions of the model's own free pass (stop-gradient) — and binds
frame 0 with each slot restricted to its region, exactly as lock-on binds the given masks at evaluation;
the other clips start from random slots. Optionally SlotContrast's slot-slot contrastive loss
(``contrast_weight``, :func:`dinosavi.models.losses.slot_contrast_loss`) ties each slot to itself in the next
frame.

For each time step ``k`` of ``time_steps`` a time decoder maps the slots of frame ``t`` to slots that
decode frame ``t+k``; all frames x time steps go through the decoder in one batched call. The loss is the
mean over time steps of the MSE to the layer-normalised frozen features (``loss_norm=target``), or, as in
the original DINOSAVi, of a learnable LayerNorm of the prediction to the raw features
(``loss_norm=prediction``).

Shapes: ``B`` batch, ``T`` frames, ``S`` slots, ``D`` feature channels, ``C`` slot size, ``h, w`` feature
grid, ``N = h*w``, ``P`` time steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import overload

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dinosavi.models.background import background_mask, bgfg_slot_masks
from dinosavi.models.conditioning import MaskConditioner
from dinosavi.models.decoders import SlotDecoder
from dinosavi.models.frame import FrameModel
from dinosavi.models.losses import region_tracking_loss, slot_contrast_loss, temporal_reconstruction_loss
from dinosavi.models.predictor import TimeDecoder
from dinosavi.models.regions import carry_regions, kmeans_regions
from dinosavi.models.slot_attention import SlotAttentionOutput

__all__ = ["CONDITIONS", "LOSS_NORMS", "ClipLoss", "SlotModel", "SlotOutput", "neighbourhood"]

LOSS_NORMS = ("target", "prediction")
CONDITIONS = ("none", "kmeans", "attention")

Masks = Tensor | Iterable[Tensor | None] | None  # per-frame ``(B, S, N)`` attention masks: see SlotModel.forward


@dataclass
class SlotOutput:
    """What the slot model gives for a clip (shapes below) or, per frame, for a stream (the same without ``T``).

    Attributes:
        slots: ``(B, T, S, C)`` slots bound at each frame.
        attention: ``(B, T, S, h, w)`` slot attention of the last iteration (softmax over slots).
        masks: ``(B, T, S, h, w)`` the present frame's decoded masks (the decoder's alpha; with
            ``blend=attention`` the attention it blends by); None when not decoded.
        prediction: ``(P, B, T, D, h, w)`` the features decoded for frame ``t + k`` at each time step ``k``
            (after the learnable norm with ``loss_norm=prediction``); a stream's: ``(B, D, h, w)``, the present
            step's; None when not decoded.
    """

    slots: Tensor
    attention: Tensor
    masks: Tensor | None
    prediction: Tensor | None


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


@dataclass
class _Start:
    """How a training batch with conditioned clips starts.

    Attributes:
        slots: ``(B, S, C)`` random initial slots (the conditioner replaces the conditioned clips').
        noise: ``(B, S, C)`` the conditioner's noise.
        mask: ``(B, S, N)`` frame-0 attention mask (conditioned clips: their regions; the others: all True).
        chosen: ``(B,)`` bool, the conditioned clips.
        regions: ``(n, S, N)`` bool regions of the ``n`` conditioned clips.
    """

    slots: Tensor
    noise: Tensor
    mask: Tensor
    chosen: Tensor
    regions: Tensor


class SlotModel(nn.Module):
    """Slots carried through time by a predictor, decoded to the present and future frames.

    Args:
        feature_dim: channels ``D`` of the frozen features.
        slot_dim: size of a slot.
        hidden_dim: hidden size of the feature MLP and of the slot MLP.
        num_slots: slot count, or ``[bg, fg]`` with background/foreground groups.
        num_iters: slot-attention iterations on frames after the first.
        decoder: decodes slots to ``feature_dim`` channels.
        ini_iters: iterations on freshly sampled slots; ``num_iters`` when None.
        predictor: maps slots of frame ``t`` to the initial slots of ``t+1`` (``nn.Identity()`` carries
            them unchanged); None samples fresh slots every frame (DINOSAUR).
        time_steps: the frame offsets ``k >= 0`` the slots of frame ``t`` are decoded to.
        time_decoders: one per time step; identity when None.
        bgfg_strategy: None (no groups), or ``initial``/``always``: with ``num_slots = [bg, fg]``, the
            background slots may attend only to background patches (from CLS attention), the others
            only to the rest, at the first frame or at every frame.
        loss_norm: ``target``: the prediction is compared with the layer-normalised features; ``prediction``:
            a learnable ``LayerNorm(feature_dim)`` (``prediction_norm``) normalises the prediction and the
            raw features are the target (the original DINOSAVi).
        input_pe, blend, input_mlp, style: as in :class:`~dinosavi.models.frame.FrameModel`.
        condition: ``none``, or the label-free first-frame regions that train a mask-conditioned slot
            initialiser (``conditioner``): ``kmeans`` of the frozen features or the model's own ``attention``.
        condition_share: the share of training clips that start from those regions, in [0, 1].
        contrast_weight: weight of SlotContrast's slot-slot contrastive loss (0: off).
        contrast_temperature: its softmax temperature.
        track_weight: weight of the region-tracking loss of conditioned clips (0: off).
        anchor: re-anchoring of carried slots toward the first frame's, in training and by default in
            inference (see :meth:`scan`).
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
        input_pe: str = "none",
        blend: str = "alpha",
        input_mlp: bool = True,
        style: str = "dinosavi",
        loss_norm: str = "target",
        condition: str = "none",
        condition_share: float = 0.5,
        contrast_weight: float = 0.0,
        contrast_temperature: float = 0.1,
        track_weight: float = 0.0,
        anchor: float = 0.0,
    ) -> None:
        super().__init__()
        if loss_norm not in LOSS_NORMS:
            raise ValueError(f"Unknown model.loss_norm `{loss_norm}`; expected one of {LOSS_NORMS}")
        _check_conditioning(condition, condition_share, contrast_weight, contrast_temperature, track_weight,
                            predictor, bgfg_strategy)
        if bgfg_strategy is not None and (isinstance(num_slots, int) or len(num_slots) != 2):
            raise ValueError(f"bgfg slot groups need num_slots = [bg, fg], got {num_slots}")
        if bgfg_strategy is None and not isinstance(num_slots, int):
            raise ValueError(f"num_slots = {list(num_slots)} ([bg, fg]) needs bgfg enabled; else give one integer")
        self.frame = FrameModel(feature_dim, slot_dim, hidden_dim, num_slots, decoder,
                                num_groups=0 if bgfg_strategy is None else 2, input_pe=input_pe, blend=blend,
                                input_mlp=input_mlp, style=style)
        if not time_steps or any(k < 0 for k in time_steps) or len(set(time_steps)) != len(time_steps):
            raise ValueError(f"time_steps must be distinct offsets >= 0, got {list(time_steps)}")
        self.num_iters = num_iters
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
        self.prediction_norm = nn.LayerNorm(feature_dim) if loss_norm == "prediction" else None
        self.condition, self.condition_share = condition, condition_share
        self.conditioner = None if condition == "none" else MaskConditioner(
            slot_dim if input_mlp else feature_dim, slot_dim, hidden_dim)
        self.contrast_weight, self.contrast_temperature = contrast_weight, contrast_temperature
        self.track_weight = track_weight
        if not 0.0 <= anchor <= 1.0:
            raise ValueError(f"model.anchor must lie in [0, 1], got {anchor}")
        self.anchor = anchor

    @property
    def num_slots(self) -> int | tuple[int, ...]:
        """The default slot count, or ``(bg, fg)`` with slot groups."""
        return self.frame.num_slots

    @property
    def grouped(self) -> bool:
        """Whether the slots come in background/foreground groups (``num_slots = (bg, fg)``)."""
        return self.bgfg_strategy is not None

    @property
    def carries_slots(self) -> bool:
        """Whether slots are carried from frame to frame (a predictor) or drawn afresh (DINOSAUR)."""
        return self.predictor is not None

    @overload
    def forward(self, features: Tensor, slots: Tensor | None = ..., masks: Masks = ..., *,
                conditioned: Tensor | None = ..., noise: Tensor | None = ...,
                num_slots: int | Sequence[int] | None = ..., generator: torch.Generator | None = ...,
                shard: tuple[int, int] = ..., ini_iters: int | None = ..., num_iters: int | None = ...,
                anchor: float | None = ..., locality: int = ..., decode: bool = ...) -> SlotOutput: ...

    @overload
    def forward(self, features: Iterable[Tensor], slots: Tensor | None = ..., masks: Masks = ..., *,
                conditioned: Tensor | None = ..., noise: Tensor | None = ...,
                num_slots: int | Sequence[int] | None = ..., generator: torch.Generator | None = ...,
                shard: tuple[int, int] = ..., ini_iters: int | None = ..., num_iters: int | None = ...,
                anchor: float | None = ..., locality: int = ..., decode: bool = ...) -> Iterator[SlotOutput]: ...

    def forward(
        self,
        features: Tensor | Iterable[Tensor],
        slots: Tensor | None = None,
        masks: Masks = None,
        *,
        conditioned: Tensor | None = None,
        noise: Tensor | None = None,
        num_slots: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
        ini_iters: int | None = None,
        num_iters: int | None = None,
        anchor: float | None = None,
        locality: int = 0,
        decode: bool = True,
    ) -> SlotOutput | Iterator[SlotOutput]:
        """Slots, attention, masks and decoded features of a clip, or of a stream frame by frame.

        Args:
            features: a clip ``(B, T, D, h, w)`` of frozen features (the result stacks its ``T`` frames), or a
                stream: per frame ``(B, D, h, w)``, in order (a generator streams long videos; one
                :class:`SlotOutput` is yielded per frame).
            slots: ``(B, S, C)`` initial slots; drawn from the model's initialisation when None (a clip: for the
                whole global batch of ``shard``, then sliced, so the draw does not depend on the split).
            masks: per frame, a ``(B, S, N)`` boolean attention mask or None, from the first frame on (missing
                frames are unmasked), or one ``(B, T, S, N)`` tensor.
            conditioned: ``(B,)`` bool: these rows start from the conditioner's slots for their first-frame mask
                (``masks``' first; lock-on); the others from ``slots``.
            noise: ``(B, S, C)`` the conditioner's noise (drawn from ``generator`` when None).
            num_slots: the slot count(s) of drawn slots; the model's when None.
            generator: random source of drawn slots and of the conditioner's noise.
            shard: ``(rank, world_size)``: a clip batch is shard ``rank`` of a global batch (DDP).
            ini_iters, num_iters, anchor, locality: as in :meth:`scan` (inference may override the model's).
            decode: False skips the decoder (``masks`` and ``prediction`` are None).

        Returns:
            A :class:`SlotOutput` for a clip; an iterator of per-frame ones for a stream.
        """
        if isinstance(features, Tensor):
            return self._clip(features, slots, masks, conditioned, noise, num_slots, generator, shard,
                              ini_iters, num_iters, anchor, locality, decode)
        return self._stream(features, slots, masks, conditioned, noise, num_slots, generator,
                            ini_iters, num_iters, anchor, locality, decode)

    def _clip(self, features: Tensor, slots: Tensor | None, masks: Masks, conditioned: Tensor | None,
              noise: Tensor | None, num_slots: int | Sequence[int] | None, generator: torch.Generator | None,
              shard: tuple[int, int], ini_iters: int | None, num_iters: int | None, anchor: float | None,
              locality: int, decode: bool) -> SlotOutput:
        """:meth:`forward` of a clip ``(B, T, D, h, w)``."""
        B, T, _, h, w = features.shape
        tokens = rearrange(self.frame.embed(rearrange(features, "b t d h w -> (b t) d h w")),
                           "(b t) n c -> b t n c", b=B)  # (B, T, N, C)
        if self.predictor is None:  # frames are independent: the whole clip is one batched first frame
            if slots is None:
                slots = rearrange(self._draw(B, T, num_slots, generator, shard), "b t s c -> (b t) s c")
            if masks is not None and not isinstance(masks, Tensor):
                raise ValueError("a clip without a predictor binds its frames in one batch: give its masks as one "
                                 "(B, T, S, N) tensor")
            flat = [None if masks is None else rearrange(masks, "b t s n -> (b t) s n")]
            out = next(self.scan([rearrange(tokens, "b t n c -> (b t) n c")], slots, flat, ini_iters=ini_iters,
                                 num_iters=num_iters))
            bound = rearrange(out.slots, "(b t) s c -> b t s c", b=B)
            attention = rearrange(out.attention, "(b t) s (h w) -> b t s h w", b=B, h=h)
        else:
            frame_masks = _per_frame(masks)
            first_mask = next(frame_masks, None)
            init = self._initial_slots(tokens[:, 0], first_mask, slots, conditioned, noise, num_slots, generator,
                                       shard)
            outs = list(self.scan(tokens.unbind(1), init, chain([first_mask], frame_masks), num_slots, generator,
                                  ini_iters, num_iters, anchor=anchor, locality=locality, grid=(h, w)))
            bound = torch.stack([o.slots for o in outs], dim=1)
            attention = rearrange(torch.stack([o.attention for o in outs], dim=1), "b t s (h w) -> b t s h w", h=h)
        if not decode:
            return SlotOutput(bound, attention, None, None)
        prediction, alpha = self._decode(rearrange(bound, "b t s c -> (b t) s c"),
                                         rearrange(attention, "b t s h w -> (b t) s h w"), range(len(self.time_steps)))
        prediction = self._normalise(rearrange(prediction, "p (b t) d h w -> p b t d h w", b=B))
        return SlotOutput(bound, attention, rearrange(alpha[self.present], "(b t) s h w -> b t s h w", b=B), prediction)

    def _stream(self, features: Iterable[Tensor], slots: Tensor | None, masks: Masks, conditioned: Tensor | None,
                noise: Tensor | None, num_slots: int | Sequence[int] | None, generator: torch.Generator | None,
                ini_iters: int | None, num_iters: int | None, anchor: float | None, locality: int,
                decode: bool) -> Iterator[SlotOutput]:
        """:meth:`forward` of a stream of ``(B, D, h, w)`` frames, one output per frame."""
        frames = iter(features)
        first = next(frames, None)
        if first is None:
            raise ValueError("the slot model got a stream of no frames")
        h, w = first.shape[-2:]
        first_tokens = self.frame.embed(first)
        mask_iter = _per_frame(masks)
        first_mask = next(mask_iter, None)
        init = self._initial_slots(first_tokens, first_mask, slots, conditioned, noise, num_slots, generator)
        tokens = chain([first_tokens], (self.frame.embed(f) for f in frames))
        steps = self.scan(tokens, init, chain([first_mask], mask_iter), num_slots, generator, ini_iters, num_iters,
                          anchor=anchor, locality=locality, grid=(h, w))
        for out in steps:
            attention = rearrange(out.attention, "b s (h w) -> b s h w", h=h)
            if not decode:
                yield SlotOutput(out.slots, attention, None, None)
                continue
            prediction, alpha = self._decode(out.slots, attention, [self.present])
            yield SlotOutput(out.slots, attention, alpha[0], self._normalise(prediction[0]))

    def _initial_slots(self, tokens: Tensor, mask: Tensor | None, slots: Tensor | None, conditioned: Tensor | None,
                       noise: Tensor | None, num_slots: int | Sequence[int] | None,
                       generator: torch.Generator | None, shard: tuple[int, int] = (0, 1)) -> Tensor:
        """``(B, S, C)`` slots entering the first frame: ``slots`` (drawn when None), the ``conditioned`` rows
        from the conditioner on their first-frame ``mask (B, S, N)`` of ``tokens (B, N, C)``."""
        B = tokens.shape[0]
        everyone = conditioned is not None and bool(conditioned.all())
        if slots is None and not everyone:  # a fully conditioned start draws nothing from the generator
            slots = self._draw(B, 1, num_slots, generator, shard)[:, 0]
        if conditioned is None or not conditioned.any():
            assert slots is not None
            return slots
        if self.conditioner is None or mask is None:
            raise ValueError("a conditioned start needs a model with a conditioner (model.condition) and the "
                             "first frame's masks")
        made = self.conditioner(tokens[conditioned], mask[conditioned], generator,
                                noise=None if noise is None else noise[conditioned])
        if slots is None:
            return made
        slots = slots.clone()
        slots[conditioned] = made.to(slots.dtype)
        return slots

    def _draw(self, batch_size: int, frames: int, num_slots: int | Sequence[int] | None,
              generator: torch.Generator | None, shard: tuple[int, int]) -> Tensor:
        """Drawn initial slots ``(batch_size, frames, S, C)``: this shard's part of the global batch's draw."""
        rank, world = shard
        init = self.frame.init_slots(batch_size * world * frames, num_slots, generator)
        init = rearrange(init, "(b t) s c -> b t s c", t=frames)
        return init[rank * batch_size : (rank + 1) * batch_size]

    def _decode(self, slots: Tensor, attention: Tensor, steps: Iterable[int]) -> tuple[Tensor, Tensor]:
        """Decode ``slots: (B', S, C)`` of frames with their attention ``(B', S, h, w)`` at the time ``steps``
        (indices into ``time_steps``): ``(P', B', D, h, w)`` predicted features (before :meth:`_normalise`) and
        ``(P', B', S, h, w)`` alpha masks; all steps go through the decoder in one batched call."""
        steps = list(steps)
        size = (attention.shape[-2], attention.shape[-1])
        decoder = self.frame.decoder
        future = torch.stack([self.time_decoders[p](slots) for p in steps])
        if self.frame.blend == "attention":  # the present step blends by attention, future steps by their alpha
            # a decoder without masks of its own (mixer) mixes future steps by the present attention too
            own = None if not decoder.needs_weights else attention
            outs = [decoder(future[i], size, attention if p == self.present else own) for i, p in enumerate(steps)]
            reconstruction = torch.cat([o.reconstruction for o in outs])
            alphas = torch.cat([o.alpha for o in outs])
        else:
            out = decoder(rearrange(future, "p b s c -> (p b) s c"), size)
            reconstruction, alphas = out.reconstruction, out.alpha
        prediction = rearrange(reconstruction, "(p b) d h w -> p b d h w", p=len(steps))
        return prediction, rearrange(alphas, "(p b) s h w -> p b s h w", p=len(steps))

    def _normalise(self, prediction: Tensor) -> Tensor:
        """``prediction: (..., D, h, w)`` through the learnable norm of ``loss_norm=prediction`` (the original:
        normalise the prediction, the raw features are the target); unchanged otherwise."""
        if self.prediction_norm is None:
            return prediction
        return self.prediction_norm(prediction.movedim(-3, -1)).movedim(-1, -3)

    def scan(
        self,
        tokens: Iterable[Tensor],
        first_slots: Tensor,
        masks: Iterable[Tensor | None] | None = None,
        num_slots: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        ini_iters: int | None = None,
        num_iters: int | None = None,
        *,
        anchor: float | None = None,
        locality: int = 0,
        grid: tuple[int, int] | None = None,
    ) -> Iterator[SlotAttentionOutput]:
        """The one loop over frames: bind each frame's tokens, starting from the previous frame's slots.

        Args:
            tokens: per frame, ``(B, N, C)`` slot-attention inputs (:meth:`FrameModel.embed`), in order; a generator
                streams long videos.
            first_slots: ``(B, S, C)`` slots entering the first frame.
            masks: per frame, a ``(B, S, N)`` boolean attention mask or None; missing frames are unmasked.
            num_slots: the slot count(s) of fresh draws for later frames without a predictor; the model's when
                None.
            generator: random source of those draws.
            ini_iters: iterations on sampled slots (the first frame; every frame without a predictor);
                the model's when None.
            num_iters: iterations on carried slots; the model's when None.
            anchor: re-anchoring of carried slots: each frame starts from ``(1 - anchor)`` times the predicted
                slots plus ``anchor`` times the slots bound at the first frame (0: off; 1: every frame starts
                from the first frame's slots); the model's ``anchor`` when None.
            locality: a locality prior of carried slots: from the second frame on, slot ``s`` may attend only
                to patches within this Chebyshev radius of the patches it won (argmax) at the previous frame; a
                slot that won none is unrestricted (0: off).
            grid: ``(h, w)`` with ``h * w = N``; needed with ``locality``.

        Yields:
            Per frame, the bound slots ``(B, S, C)`` and the last iteration's attention ``(B, S, N)``.
        """
        if locality and grid is None:
            raise ValueError("scan with a locality prior needs the feature grid (h, w)")
        anchor = self.anchor if anchor is None else anchor
        mask_iter = iter(masks) if masks is not None else iter(())
        fresh_iters, carried_iters = ini_iters or self.ini_iters, num_iters or self.num_iters
        slots: Tensor | None = None
        first: Tensor | None = None
        near: Tensor | None = None
        for x in tokens:
            mask = next(mask_iter, None)
            if slots is None:
                start, iters = first_slots, fresh_iters
            elif self.predictor is None:  # DINOSAUR: every frame as the first
                start, iters = self.frame.init_slots(x.shape[0], num_slots, generator).to(x.dtype), fresh_iters
            else:
                start, iters = self.predictor(slots), carried_iters
                if anchor and first is not None:
                    start = (1 - anchor) * start + anchor * first
                if near is not None:
                    mask = near if mask is None else mask & near
            out = self.frame.slot_attention(x, start, iters, mask)
            slots = out.slots
            if first is None:
                first = slots
            if locality:
                assert grid is not None
                near = neighbourhood(out.attention, grid, locality)
            yield out


    def clip_loss(
        self, features: Tensor, cls_attention: Tensor | None = None, shard: tuple[int, int] = (0, 1)
    ) -> ClipLoss:
        """The training objective on clips: :meth:`forward` on the frames whose future is in the clip, then the
        losses.

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
        T = features.shape[1]
        bound = T - max(self.time_steps)
        if bound < 1:
            raise ValueError(
                f"clips of {T} frames are too short for time_steps={list(self.time_steps)}; "
                f"data.frames_per_clip must be at least {max(self.time_steps) + 1}"
            )
        clip = features[:, :bound]
        start = self._start(clip[:, 0], shard)
        if start is None:
            masks = self._bgfg_masks(cls_attention, bound) if self.bgfg_strategy is not None else None
            out = self(clip, masks=masks, shard=shard)
        else:
            out = self(clip, start.slots, [start.mask], conditioned=start.chosen, noise=start.noise, shard=shard)
        assert out.prediction is not None and out.masks is not None
        loss, logs = temporal_reconstruction_loss(out.prediction, features, self.time_steps,
                                                  normalized=self.prediction_norm is None)
        if self.contrast_weight > 0 and bound > 1:
            contrast = slot_contrast_loss(out.slots, self.contrast_temperature)
            logs["loss/contrast"] = contrast.detach()
            loss = loss + self.contrast_weight * contrast
        if self.track_weight > 0 and bound > 1 and start is not None and start.chosen.any():
            chosen = start.chosen
            targets = carry_regions(start.regions, rearrange(clip[chosen], "b t d h w -> b t (h w) d"))  # (n,T',S,N)
            attention = rearrange(out.attention[chosen, 1:], "b t s h w -> b t s (h w)")
            track = region_tracking_loss(attention, targets[:, 1:])
            logs["loss/track"] = track.detach()
            loss = loss + self.track_weight * track
        return ClipLoss(loss, logs, out.masks)

    def regions(self, features: Tensor, num_slots: int) -> Tensor:
        """Label-free regions of one frame for the conditioner: ``(B, S, N)`` bool, disjoint.

        Args:
            features: ``(B, D, h, w)`` frozen features of the frame.
            num_slots: ``S``.
        """
        if self.condition == "kmeans":
            return kmeans_regions(rearrange(features, "b d h w -> b (h w) d"), num_slots)
        tokens = self.frame.embed(features)
        with torch.no_grad():  # the model's own free pass, stop-gradient
            free = self.frame.slot_attention(
                tokens, self.frame.init_slots(tokens.shape[0], num_slots).to(tokens.dtype), self.ini_iters)
        return free.attention.argmax(1)[:, None, :] == torch.arange(num_slots, device=tokens.device)[None, :, None]

    def _start(self, features: Tensor, shard: tuple[int, int]) -> _Start | None:
        """How a training batch starts when ``condition_share`` of its clips start from their own regions
        (None: every clip from random slots): ``features (B, D, h, w)`` of frame 0.

        Clip ``g`` of the global batch is conditioned when ``floor((g + 1) share) > floor(g share)``: an even
        spread that does not depend on how the batch is split over processes.
        """
        if self.conditioner is None or not self.training or self.predictor is None:
            return None
        B, N = features.shape[0], features.shape[-2] * features.shape[-1]
        init = self._draw(B, 1, None, None, shard)[:, 0]
        S = init.shape[1]
        rank, world = shard
        noise = torch.randn(B * world, S, init.shape[2], device=init.device)[rank * B : (rank + 1) * B]
        g = torch.arange(rank * B, (rank + 1) * B, device=init.device, dtype=torch.float64)
        chosen = torch.floor((g + 1) * self.condition_share) > torch.floor(g * self.condition_share)  # (B,)
        mask = torch.ones(B, S, N, dtype=torch.bool, device=features.device)
        regions = mask[:0]  # (n, S, N)
        if chosen.any():
            regions = self.regions(features[chosen], S)
            mask[chosen] = regions
        return _Start(init, noise, mask, chosen, regions)

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


def _per_frame(masks: Masks) -> Iterator[Tensor | None]:
    """``masks`` frame by frame: the ``(B, S, N)`` of each frame of a ``(B, T, S, N)`` tensor, or of an iterable."""
    if masks is None:
        return iter(())
    return iter(masks.unbind(1)) if isinstance(masks, Tensor) else iter(masks)


def neighbourhood(attention: Tensor, grid: tuple[int, int], radius: int) -> Tensor:
    """Where each slot may look next: the patches it won, dilated.

    Args:
        attention: ``(B, S, N)`` attention of a frame (softmax over slots).
        grid: ``(h, w)``, ``h * w = N``.
        radius: Chebyshev radius of the dilation, in patches.

    Returns:
        ``(B, S, N)`` bool: within ``radius`` of a patch where slot ``s`` has the largest attention; all True
        for a slot that won no patch.
    """
    S = attention.shape[1]
    won = F.one_hot(attention.argmax(1), S).transpose(1, 2).to(attention.dtype)  # (B, S, N)
    won = rearrange(won, "b s (h w) -> b s h w", h=grid[0])
    near = F.max_pool2d(won, 2 * radius + 1, stride=1, padding=radius) > 0
    near = rearrange(near, "b s h w -> b s (h w)")
    return near | ~near.any(-1, keepdim=True)


def _check_conditioning(condition: str, share: float, contrast_weight: float, temperature: float,
                        track_weight: float, predictor: nn.Module | None, bgfg_strategy: str | None) -> None:
    """Raise ``ValueError`` naming the key of a bad conditioning or contrast setting."""
    if condition not in CONDITIONS:
        raise ValueError(f"Unknown model.condition `{condition}`; expected one of {CONDITIONS}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"model.condition_share must lie in [0, 1], got {share}")
    if condition != "none" and (predictor is None or bgfg_strategy is not None):
        raise ValueError(f"model.condition={condition} trains slots carried from a conditioned first frame: it needs "
                         f"a predictor (savi or identity) and no bgfg slot groups; set model.condition=none "
                         f"(and model.track_weight=0) for this model")
    if track_weight < 0 or (track_weight > 0 and condition == "none"):
        raise ValueError(f"model.track_weight={track_weight} must be >= 0, and > 0 only with model.condition "
                         f"(it trains the conditioned clips)")
    if contrast_weight < 0 or temperature <= 0:
        raise ValueError(f"model.contrast_weight must be >= 0 and model.contrast_temperature > 0, got "
                         f"{contrast_weight}, {temperature}")
