"""DINOSAVi: the per-frame DINOSAUR modules in a loop over time, trained to predict present and future features.

:meth:`SlotModel.scan` is the one loop over frames; training (:meth:`SlotModel.clip_loss`) and every
inference path (:func:`dinosavi.evaluation.vos.segment_sequence`) go through it, so a model does at frame
``t`` of a long evaluation what it was trained to do at frame ``t`` of a clip. At the first frame slots
are sampled (or given, e.g. locked onto first-frame objects) and bound with ``ini_iters`` slot-attention
iterations. At each later frame:

- predictor ``savi`` or ``identity``: the previous frame's slots, carried through the predictor, are bound
  with ``num_iters`` iterations (SAVi, Kipf et al., 2022);
- predictor ``none`` (DINOSAUR): fresh slots are sampled and bound with ``ini_iters`` iterations, exactly
  as at the first frame; frames are independent, so training binds all frames of a clip in one batched
  call of the same loop. Slot identity across frames then comes from matching
  (:mod:`dinosavi.evaluation.tracking`).

Conditioned lock-on (``condition``): a :class:`~dinosavi.models.conditioning.MaskConditioner` turns
first-frame region masks into initial slots (SAVi's conditional initialisation). Training needs no labels:
a share ``condition_share`` of the clips starts from regions of its own first frame — ``kmeans`` regions of
the frozen features, or the ``attention`` regions of the model's own free pass (stop-gradient) — and binds
frame 0 with each slot restricted to its region, exactly as lock-on binds the given masks at evaluation;
the other clips start from random slots. Optionally SlotContrast's slot-slot contrastive loss
(``contrast_weight``, :func:`dinosavi.losses.slot_contrast_loss`) ties each slot to itself in the next frame.

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

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dinosavi.losses import region_tracking_loss, slot_contrast_loss, temporal_reconstruction_loss
from dinosavi.models.background import background_mask, bgfg_slot_masks
from dinosavi.models.conditioning import MaskConditioner
from dinosavi.models.decoders import DecoderOutput, SlotDecoder
from dinosavi.models.dinosaur import Dinosaur
from dinosavi.models.predictor import TimeDecoder
from dinosavi.models.regions import carry_regions, kmeans_regions
from dinosavi.models.slot_attention import SlotAttentionOutput

__all__ = ["CONDITIONS", "LOSS_NORMS", "ClipLoss", "SlotModel", "neighbourhood"]

LOSS_NORMS = ("target", "prediction")
CONDITIONS = ("none", "kmeans", "attention")


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
        slots: ``(B, S, C)`` initial slots (conditioned clips from their regions, the others random).
        mask: ``(B, S, N)`` frame-0 attention mask (conditioned clips: their regions; the others: all True).
        chosen: ``(B,)`` bool, the conditioned clips.
        regions: ``(n, S, N)`` bool regions of the ``n`` conditioned clips.
    """

    slots: Tensor
    mask: Tensor
    chosen: Tensor
    regions: Tensor


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
        input_pe, blend, input_mlp, style: as in :class:`~dinosavi.models.dinosaur.Dinosaur`.
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
        if loss_norm not in LOSS_NORMS:
            raise ValueError(f"Unknown model.loss_norm `{loss_norm}`; expected one of {LOSS_NORMS}")
        _check_conditioning(condition, condition_share, contrast_weight, contrast_temperature, track_weight,
                            predictor, bgfg_strategy)
        if bgfg_strategy is not None and (isinstance(num_slots, int) or len(num_slots) != 2):
            raise ValueError(f"bgfg slot groups need num_slots = [bg, fg], got {num_slots}")
        if bgfg_strategy is None and not isinstance(num_slots, int):
            raise ValueError(f"num_slots = {list(num_slots)} ([bg, fg]) needs bgfg enabled; else give one integer")
        super().__init__(feature_dim, slot_dim, hidden_dim, num_slots, num_iters, decoder,
                         num_groups=0 if bgfg_strategy is None else 2, input_pe=input_pe, blend=blend,
                         input_mlp=input_mlp, style=style)
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
    def carries_slots(self) -> bool:
        """Whether slots are carried from frame to frame (a predictor) or drawn afresh (DINOSAUR)."""
        return self.predictor is not None

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
            tokens: per frame, ``(B, N, C)`` slot-attention inputs (:meth:`embed`), in order; a generator
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
                start, iters = self.init_slots(x.shape[0], num_slots, generator).to(x.dtype), fresh_iters
            else:
                start, iters = self.predictor(slots), carried_iters
                if anchor and first is not None:
                    start = (1 - anchor) * start + anchor * first
                if near is not None:
                    mask = near if mask is None else mask & near
            out = self.slot_attention(x, start, iters, mask)
            slots = out.slots
            if first is None:
                first = slots
            if locality:
                assert grid is not None
                near = neighbourhood(out.attention, grid, locality)
            yield out

    def decode(self, slots: Tensor, size: tuple[int, int], attention: Tensor | None = None) -> DecoderOutput:
        """Decode ``slots: (B, S, slot_dim)`` to the present frame on a grid of ``size = (h, w)``; with
        ``blend=attention`` the frame's ``(B, S, h, w)`` slot attention blends them."""
        return self.decoder(self.time_decoders[self.present](slots), size, self._weights(attention))

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
        inputs = rearrange(self.embed(rearrange(features[:, :bound], "b t d h w -> (b t) d h w")),
                           "(b t) n c -> b t n c", b=B)  # (B, T', N, C)
        masks = self._bgfg_masks(cls_attention, bound) if self.bgfg_strategy is not None else None
        frozen = rearrange(features[:, :bound], "b t d h w -> b t (h w) d")
        start = self._start(inputs[:, 0], frozen[:, 0], shard)
        slots, attention = self._bind_clip(inputs, masks, shard, start)  # (B, T', S, C), (B, T', S, N)
        P = len(self.time_steps)
        future = torch.stack([td(rearrange(slots, "b t s c -> (b t) s c")) for td in self.time_decoders])
        if self.blend == "attention":  # the present step blends by attention, future steps by their alpha
            weights = rearrange(attention, "b t s (h w) -> (b t) s h w", h=h)
            # a decoder without masks of its own (mixer) mixes future steps by the present attention too
            own = None if not self.decoder.needs_weights else weights
            outs = [self.decoder(future[p], (h, w), weights if p == self.present else own) for p in range(P)]
            reconstruction = torch.cat([o.reconstruction for o in outs])
            alphas = torch.cat([o.alpha for o in outs])
        else:
            out = self.decoder(rearrange(future, "p bt s c -> (p bt) s c"), (h, w))
            reconstruction, alphas = out.reconstruction, out.alpha
        prediction = rearrange(reconstruction, "(p b t) d h w -> p b t d h w", p=P, b=B)
        if self.prediction_norm is not None:  # the original: normalise the prediction, raw features as target
            prediction = self.prediction_norm(prediction.movedim(3, -1)).movedim(-1, 3)
        loss, logs = temporal_reconstruction_loss(prediction, features, self.time_steps,
                                                  normalized=self.prediction_norm is None)
        if self.contrast_weight > 0 and bound > 1:
            contrast = slot_contrast_loss(slots, self.contrast_temperature)
            logs["loss/contrast"] = contrast.detach()
            loss = loss + self.contrast_weight * contrast
        if self.track_weight > 0 and bound > 1 and start is not None and start.chosen.any():
            chosen = start.chosen
            targets = carry_regions(start.regions, frozen[chosen])  # (n, T', S, N)
            track = region_tracking_loss(attention[chosen, 1:], targets[:, 1:])
            logs["loss/track"] = track.detach()
            loss = loss + self.track_weight * track
        alpha = rearrange(alphas, "(p b t) s h w -> p b t s h w", p=P, b=B)[self.present]
        return ClipLoss(loss, logs, alpha)

    def _init_shard(self, batch_size: int, frames: int, shard: tuple[int, int]) -> Tensor:
        """Initial slots ``(batch_size, frames, S, C)``: this shard's part of the global batch's draw."""
        rank, world = shard
        init = self.init_slots(batch_size * world * frames)
        init = rearrange(init, "(b t) s c -> b t s c", t=frames)
        return init[rank * batch_size : (rank + 1) * batch_size]

    def _bind_clip(self, inputs: Tensor, masks: Tensor | None, shard: tuple[int, int],
                   start: _Start | None) -> tuple[Tensor, Tensor]:
        """Slots and attention of every frame: ``inputs (B, T', N, C)``, ``masks (B, T', S, N)`` ->
        ``(B, T', S, C)``, ``(B, T', S, N)``; ``start``: the initial slots and frame-0 mask of a batch with
        conditioned clips (random slots when None)."""
        B, T = inputs.shape[:2]
        if self.predictor is None:  # frames are independent: the whole clip is one batched first frame
            init = rearrange(self._init_shard(B, T, shard), "b t s c -> (b t) s c")
            flat_masks = [None if masks is None else rearrange(masks, "b t s n -> (b t) s n")]
            out = next(self.scan([rearrange(inputs, "b t n c -> (b t) n c")], init, flat_masks))
            return (rearrange(out.slots, "(b t) s c -> b t s c", b=B),
                    rearrange(out.attention, "(b t) s n -> b t s n", b=B))
        frame_masks: list[Tensor | None] | None = None if masks is None else list(masks.unbind(1))
        if start is None:
            init = self._init_shard(B, 1, shard)[:, 0]
        else:
            init, frame_masks = start.slots, [start.mask]
        outs = list(self.scan(inputs.unbind(1), init, frame_masks))
        return torch.stack([o.slots for o in outs], dim=1), torch.stack([o.attention for o in outs], dim=1)

    def regions(self, tokens: Tensor, features: Tensor | None, num_slots: int) -> Tensor:
        """Label-free regions of one frame for the conditioner: ``(B, S, N)`` bool, disjoint.

        Args:
            tokens: ``(B, N, C)`` slot-attention inputs of the frame.
            features: ``(B, N, D)`` its frozen features (``kmeans``).
            num_slots: ``S``.
        """
        if self.condition == "kmeans":
            assert features is not None
            return kmeans_regions(features, num_slots)
        with torch.no_grad():  # the model's own free pass, stop-gradient
            free = self.slot_attention(tokens, self.init_slots(tokens.shape[0], num_slots).to(tokens.dtype),
                                       self.ini_iters)
        return free.attention.argmax(1)[:, None, :] == torch.arange(num_slots, device=tokens.device)[None, :, None]

    def _start(self, tokens: Tensor, features: Tensor, shard: tuple[int, int]) -> _Start | None:
        """How a training batch starts when ``condition_share`` of its clips start from their own regions
        (None: every clip from random slots): ``tokens (B, N, C)`` and ``features (B, N, D)`` of frame 0.

        Clip ``g`` of the global batch is conditioned when ``floor((g + 1) share) > floor(g share)``: an even
        spread that does not depend on how the batch is split over processes.
        """
        if self.conditioner is None or not self.training or self.predictor is None:
            return None
        B, N = tokens.shape[:2]
        init = self._init_shard(B, 1, shard)[:, 0]
        S = init.shape[1]
        rank, world = shard
        noise = torch.randn(B * world, S, init.shape[2], device=init.device)[rank * B : (rank + 1) * B]
        g = torch.arange(rank * B, (rank + 1) * B, device=init.device, dtype=torch.float64)
        chosen = torch.floor((g + 1) * self.condition_share) > torch.floor(g * self.condition_share)  # (B,)
        mask = torch.ones(B, S, N, dtype=torch.bool, device=tokens.device)
        regions = mask[:0]  # (n, S, N)
        if chosen.any():
            regions = self.regions(tokens[chosen], features[chosen], S)
            init = init.clone()
            init[chosen] = self.conditioner(tokens[chosen], regions, noise=noise[chosen]).to(init.dtype)
            mask[chosen] = regions
        return _Start(init, mask, chosen, regions)

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
