"""Video object segmentation with slots: first-frame lock-on (semi-supervised) or every slot a segment.

Lock-on (``lock_on=True``): at the first frame each object of the given mask gets ``slots_per_class``
slots that may only attend to its patches, ``num_bg_slots`` slots take the background, and
``num_extra_slots`` slots take foreground patches (from the encoder's CLS attention) that no annotated
object covers, so unannotated objects do not leak into tracked ones; they count as background.
Later frames are unmasked and follow the model's time loop: a model with a predictor carries the locked
slots on; a per-frame model binds fresh slots and tracking hands each the class of the track it
continues. A class's score is the max over its slots' masks; scores are upsampled to the frame size
before the argmax.

Unsupervised (``lock_on=False``): ``num_slots`` slots (the model's by default) bind freely; slot ``s``
is segment ``s + 1`` of every frame. With background/foreground slot groups and a CLS-attention
background, the groups are restricted to their patches at the first frame, as in training.

Lock-on's first frame can also go through the model's conditioned initialiser (``lock_init=mask``, a model
trained with ``model.condition``): the masks become the initial slots (:mod:`dinosavi.models.conditioning`),
and ``bg_regions=kmeans`` splits the background into one k-means region per background slot, as training's
pseudo-masks split whole frames. Inference aids, each an option: ``locality`` and ``anchor`` (passed to the
model's time loop), and ``fuse``, which mixes the slots' class scores with a prior (label propagation's soft
labels on the same features) before the argmax.

Either way, ``track_mode`` re-orders slots frame to frame (:mod:`dinosavi.evaluation.tracking`); by
default per-frame models are tracked and models that carry their slots are not.

The original DINOSAVi's protocol (``eval=original``) adds ``later_backgrounds``: at every later frame the
background slots may attend only to that frame's CLS-attention background, the other slots anywhere (and
without lock-on the background group is restricted the same way at the first frame); and it samples the
first-frame labels at the patch grid by nearest neighbour (``label_sampling="nearest"``), so only objects
that hit a sampled pixel get slots.

Shapes: ``T`` frames, ``S`` slots, ``K`` objects (ids 1..K; 0 background), ``H, W`` pixels,
``h, w`` feature grid, ``N = h*w``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain, repeat, tee
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from dinosavi.evaluation.options import EvalOptions, PropagationParams
from dinosavi.evaluation.propagate import DINO, propagate_frames, soft_to_labels
from dinosavi.evaluation.tracking import SlotTracker
from dinosavi.metrics.protocol import VOID_LABEL
from dinosavi.models.background import background_mask, bgfg_slot_masks
from dinosavi.models.regions import kmeans_regions
from dinosavi.models.slot_model import SlotModel

__all__ = ["Fusion", "SegmentResult", "collect", "lock_on_mask", "patch_labels", "patch_labels_nearest",
           "segment_frames", "segment_sequence", "segment_stream"]



@dataclass
class SegmentResult:
    """Segmentation of one frame, as :func:`segment_frames` yields it, or of a sequence, its frames stacked
    by :func:`collect` (the leading ``T`` below).

    Attributes:
        labels: ``(T, H, W)`` (a frame: ``(H, W)``) int64 predicted ids: object ids with lock-on (frame 0 is the
            given mask), segment ids ``1..S`` without.
        masks: ``(T, S, h, w)`` (a frame: ``(S, h, w)``) per-slot masks (decoder alpha or slot attention), in
            the tracks' order.
        slot_classes: ``(S,)`` the id each slot stands for (0 background); the same at every frame.
    """

    labels: Tensor
    masks: Tensor
    slot_classes: Tensor


@dataclass
class Fusion:
    """Class scores to fuse with lock-on's (``EvalOptions.fuse``): label propagation on the same features.

    Attributes:
        scores: per frame, in order, ``(K + 1, h, w)`` soft labels (frame 0's is skipped: its mask is given).
        patch_size: the feature stride; fused scores are read out as propagation reads its soft labels
            (:func:`dinosavi.evaluation.propagate.soft_to_labels`), so ``fuse=1`` gives propagation's labels.
        norm_mask: propagation's min-max normalisation of each class's map before the argmax.
    """

    scores: Iterable[Tensor]
    patch_size: int
    norm_mask: bool = True


def patch_labels(labels: Tensor, grid: tuple[int, int], num_objects: int) -> Tensor:
    """Object id of each patch: the majority id by area, void counted as background.

    Every object present in ``labels`` keeps at least the patch it covers most, so small objects
    still get slots.

    Args:
        labels: ``(H, W)`` int64 ids (255 void).
        grid: ``(h, w)``.
        num_objects: ``K``.

    Returns:
        ``(h, w)`` int64 ids in ``0..K``.
    """
    ids = torch.where(labels == VOID_LABEL, torch.zeros_like(labels), labels)
    onehot = F.one_hot(ids.clamp(max=num_objects), num_objects + 1).permute(2, 0, 1).float()  # (K+1, H, W)
    frac = F.adaptive_avg_pool2d(onehot[None], grid)[0]  # (K+1, h, w): exact area fractions
    out = frac.argmax(0)
    for k in range(1, num_objects + 1):
        if onehot[k].any() and not (out == k).any():
            out.view(-1)[frac[k].flatten().argmax()] = k
    return out


def patch_labels_nearest(labels: Tensor, grid: tuple[int, int]) -> Tensor:
    """Object id of each patch by nearest-neighbour sampling (the original DINOSAVi's ``F.interpolate`` of the
    first frame's one-hot labels), void counted as background: ``(H, W)`` int64 -> ``(h, w)`` int64."""
    ids = torch.where(labels == VOID_LABEL, torch.zeros_like(labels), labels)
    return F.interpolate(ids[None, None].float(), size=grid, mode="nearest")[0, 0].long()


def lock_on_mask(
    patches: Tensor,
    num_objects: int,
    num_bg_slots: int,
    slots_per_class: int,
    num_extra_slots: int = 0,
    background: Tensor | None = None,
    objects: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """The first-frame attention mask and the class of every slot.

    Slot order: ``num_bg_slots`` background slots, ``slots_per_class`` slots per object, then
    ``num_extra_slots`` extra slots (class 0) that may attend to the foreground patches of
    ``background`` that no object covers — or, when there are none, to every unlabelled patch.

    Args:
        patches: ``(h, w)`` patch ids from :func:`patch_labels`.
        num_objects: ``K``.
        num_bg_slots: background slots.
        slots_per_class: slots per object.
        num_extra_slots: extra foreground slots.
        background: ``(h, w)`` bool CLS-attention background; needed with extra slots.
        objects: the object ids that get slots, in order; ``1..K`` when None.

    Returns:
        mask ``(S, N)`` bool (True: the slot may attend to the patch) and slot classes ``(S,)`` int64,
        with ``S = num_bg_slots + K * slots_per_class + num_extra_slots``.
    """
    ids = torch.arange(1, num_objects + 1) if objects is None else torch.tensor(list(objects), dtype=torch.long)
    classes = torch.cat([
        torch.zeros(num_bg_slots, dtype=torch.long),
        ids.repeat_interleave(slots_per_class),
    ]).to(patches.device)
    mask = classes[:, None] == patches.flatten()[None, :]
    if num_extra_slots:
        if background is None:
            raise ValueError("eval.num_extra_slots needs the CLS-attention background of the first frame; "
                             "use an encoder with a CLS token (a ViT)")
        unlabelled = patches.flatten() == 0
        region = unlabelled & ~background.flatten().to(patches.device)
        if not region.any():
            region = unlabelled if unlabelled.any() else torch.ones_like(unlabelled)
        mask = torch.cat([mask, region.expand(num_extra_slots, -1)])
        classes = torch.cat([classes, classes.new_zeros(num_extra_slots)])
    return mask, classes


def segment_sequence(
    model: SlotModel,
    features: Iterable[Tensor],
    first_labels: Tensor | None,
    options: EvalOptions | None = None,
    **frames: Any,
) -> SegmentResult:
    """Segment a video, from its first-frame mask (lock-on) or with every slot a segment.

    Frames go through the model's one forward (:meth:`dinosavi.models.slot_model.SlotModel.forward`), as
    in training: a model with a predictor carries its slots from frame to frame; a per-frame model
    (DINOSAUR) binds fresh slots at every frame, and slot identity across frames comes from tracking.

    Takes the arguments of :func:`segment_frames`, documented there, and collects its frames.
    """
    return collect(segment_frames(model, features, first_labels, options, **frames))


def collect(steps: Iterable[SegmentResult]) -> SegmentResult:
    """A video's frames, as :func:`segment_frames` or :func:`segment_stream` yield them, stacked into the
    video's :class:`SegmentResult`."""
    frames = list(steps)
    if not frames:
        raise ValueError("segment_sequence got no frames")
    return SegmentResult(labels=torch.stack([s.labels for s in frames]),
                         masks=torch.stack([s.masks for s in frames]), slot_classes=frames[0].slot_classes)


def segment_stream(
    model: SlotModel,
    outputs: Iterator[tuple[Tensor, Tensor | None]],
    first_labels: Tensor | None,
    options: EvalOptions,
    *,
    size: tuple[int, int],
    patch_size: int,
    seed: int,
    propagation: PropagationParams = DINO,
) -> Iterator[SegmentResult]:
    """Segment a video from the encoder's output, as ``mode=eval``, ``mode=segment`` and the anchors' protocol
    do: the CLS-attention backgrounds and the fusion with label propagation that ``options`` ask for are
    derived here, once, and the frames go through :func:`segment_frames`.

    Args:
        model: the trained slot model (in eval mode).
        outputs: per frame, in order, its features ``(D, h, w)`` and CLS attention ``(heads, h, w)`` (None for
            an encoder without a CLS token), as :meth:`dinosavi.features.source.FeatureSource.frames` and
            ``.stream`` give them.
        first_labels: ``(H, W)`` int64 ids of frame 0 (lock-on), or None.
        options: as :func:`segment_frames`; besides, the first frame's CLS background goes to the extra slots
            (``num_extra_slots``, lock-on) or to the background/foreground slot groups (without), and
            ``every_frame_background`` and ``fuse`` are honoured here.
        size: ``(H, W)`` of the predictions.
        patch_size: the encoder's stride (the fusion reads its scores at it).
        seed: the seed of the initial slots.
        propagation: the label propagation ``options.fuse`` mixes in.

    Yields:
        Per frame, its :class:`SegmentResult`; nothing for a video without frames.
    """
    first = next(outputs, None)
    if first is None:
        return
    features, cls_attention = first
    every_frame = options.every_frame_background
    wants_background = every_frame or (options.num_extra_slots > 0 if options.lock_on
                                       else model.grouped)
    background = None
    if wants_background and cls_attention is not None:
        background = background_mask(cls_attention[None])[0]
    later = None
    if every_frame:  # each later frame's CLS background, encoded once with its features
        outputs, with_cls = tee(outputs)
        later = (background_mask(a[None])[0] for _, a in with_cls if a is not None)
    frames: Iterator[Tensor] = chain([features], (f for f, _ in outputs))
    fusion = None
    if options.fuse > 0 and options.lock_on and first_labels is not None:
        frames, to_propagate = tee(frames)  # label propagation on the same features, frame by frame
        fusion = Fusion((p.soft for p in propagate_frames(to_propagate, first_labels, patch_size, propagation)),
                        patch_size, propagation.norm_mask)
    yield from segment_frames(model, frames, first_labels, options, size=size, background=background,
                              later_backgrounds=later, generator=torch.Generator().manual_seed(seed), fusion=fusion)


def segment_frames(
    model: SlotModel,
    features: Iterable[Tensor],
    first_labels: Tensor | None,
    options: EvalOptions | None = None,
    *,
    size: tuple[int, int] | None = None,
    background: Tensor | None = None,
    later_backgrounds: Iterable[Tensor] | None = None,
    generator: torch.Generator | None = None,
    fusion: Fusion | None = None,
) -> Iterator[SegmentResult]:
    """Segment a video frame by frame, from its first-frame mask (lock-on) or with every slot a segment.

    The streaming form of :func:`segment_sequence` (same arguments, same results): it pulls the next
    frame's features only when asked for the next frame and keeps only the model's slots and the tracker's
    state, so a long video runs in bounded memory. Arguments are checked at the call.

    Args:
        model: the trained slot model (in eval mode).
        features: per-frame features ``(D, h, w)`` in order — a ``(T, D, h, w)`` tensor, or a generator
            that encodes frames chunk by chunk so long videos never hold all features at once.
        first_labels: ``(H, W)`` int64 ids of frame 0 (255 void); needed with ``options.lock_on``.
        options: what :class:`dinosavi.evaluation.options.EvalOptions` says of binding and read-out:
            ``lock_on`` (False: slot ``s`` is segment ``s + 1``), the slot counts (``num_bg_slots``,
            ``slots_per_class``, ``num_extra_slots`` with lock-on, which need ``background``; ``num_slots``
            without, the model's when None), ``label_sampling`` (``area``: :func:`patch_labels`; ``nearest``:
            :func:`patch_labels_nearest`, objects no sampled pixel hits get no slots), ``output`` (``alpha``
            decoder masks or ``slot`` attention), ``num_iters``/``ini_iters`` (the model's when None) and
            ``track_mode``/``track_temperature`` (``auto``: ``overlap`` for a per-frame model, none for a
            model that carries its slots). Defaults: ``EvalOptions()``.
        size: ``(H, W)`` of the predictions; ``first_labels``' size when None.
        background: ``(h, w)`` bool CLS-attention background of frame 0
            (:func:`dinosavi.models.background.background_mask`), or None.
        later_backgrounds: per later frame, in order, its ``(h, w)`` bool CLS-attention background: the
            background slots (the first ``num_bg_slots`` with lock-on, the background group without) may attend
            only to it, the others anywhere; without lock-on the background group is restricted so at frame 0
            too (from ``background``). None: later frames are unrestricted.
        generator: source of the initial slots (and of the fresh slots of a per-frame model).
        fusion: class scores to fuse with the slots' (label propagation's soft labels); read with
            ``options.fuse > 0``.

    Yields:
        Per frame, its :class:`SegmentResult`.

    Raises:
        ValueError: bad arguments (at the call), or no frames (at the first step).
    """
    options = options or EvalOptions()
    device = next(model.parameters()).device
    if first_labels is not None:
        first_labels = first_labels.to(device)
        size = (first_labels.shape[-2], first_labels.shape[-1])
    if size is None:
        raise ValueError("segment_sequence needs first_labels or size")
    if options.lock_on and first_labels is None:
        raise ValueError("lock-on evaluation needs the first frame's labels")
    track_mode = options.track_mode
    if track_mode == "auto":
        track_mode = None if model.carries_slots else "overlap"
    tracker = SlotTracker(track_mode, options.track_temperature) if track_mode else None
    if options.fuse > 0 and (fusion is None or not options.lock_on):
        raise ValueError("eval.fuse mixes lock-on's class scores with label propagation's soft labels; it needs "
                         "lock_on=true and the propagation to fuse with")
    if options.lock_on and _lock_init(model, options) == "mask" and model.conditioner is None:
        raise ValueError("eval.lock_init=mask needs a model trained with a conditioned initialiser "
                         "(model.condition=kmeans or attention); this model has none: use eval.lock_init=random")
    return _segment_steps(model, features, first_labels, size, options, background, later_backgrounds, tracker,
                          generator, fusion if options.fuse > 0 else None)


@torch.no_grad()
def _segment_steps(
    model: SlotModel,
    features: Iterable[Tensor],
    first_labels: Tensor | None,
    size: tuple[int, int],
    options: EvalOptions,
    background: Tensor | None,
    later_backgrounds: Iterable[Tensor] | None,
    tracker: SlotTracker | None,
    generator: torch.Generator | None,
    fusion: Fusion | None,
) -> Iterator[SegmentResult]:
    """The loop of :func:`segment_frames`, its arguments checked."""
    device = next(model.parameters()).device
    frames = iter(features)
    first = next(frames, None)
    if first is None:
        raise ValueError("segment_sequence got no frames")
    first = first.to(device)
    h, w = first.shape[-2:]
    bg = None if background is None else background.to(device).reshape(h, w)
    assign = options.lock_on and _lock_init(model, options) == "assign"
    free = replace(options, lock_on=False) if assign else options
    counts, mask, classes, num_bg = _first_frame_slots(model, first_labels, first, free, bg,
                                                       restrict_later=later_backgrounds is not None)
    later: Iterable[Tensor | None] = ()
    if later_backgrounds is not None and num_bg:
        later = (_background_slots(b.to(device).reshape(h, w), len(classes), num_bg)[None] for b in later_backgrounds)
    won: list[Tensor] = []  # the previous frame's winning slot per patch, for exclusion
    if options.exclusion and options.lock_on and not assign:
        later = _excluded(later, won, classes, num_bg)
    from_masks = options.lock_on and mask is not None and _lock_init(model, options) == "mask"
    aids = options.lock_on  # anchoring and locality are lock-on's aids; free slots follow the model's loop
    steps = model(chain([first[None]], (f.to(device)[None] for f in frames)),
                  masks=chain([None if mask is None else mask[None]], later),
                  conditioned=torch.ones(1, dtype=torch.bool, device=device) if from_masks else None,
                  num_slots=counts, generator=generator, ini_iters=options.ini_iters, num_iters=options.num_iters,
                  anchor=options.anchor if aids else None, locality=options.locality if aids else 0,
                  decode=options.output == "alpha")
    priors = iter(fusion.scores) if fusion is not None else None
    num_classes = int(classes.max()) if classes.numel() else 0
    for index, out in enumerate(steps):
        m = out.masks[0] if out.masks is not None else out.attention[0]  # (S, h, w)
        if tracker is not None:  # the carried slots keep the model's order; the masks take the tracks'
            m = m[tracker.assign(out.slots[0], m)]  # (S, h, w)
        won[:] = [out.attention[0].flatten(1).argmax(0)]
        if index == 0 and options.lock_on:
            assert first_labels is not None
            labels = torch.where(first_labels == VOID_LABEL, 0, first_labels)
            if assign:
                classes = _assigned_classes(m, labels)
                num_classes = int(labels.max())
            if priors is not None:
                next(priors)  # frame 0's prior is the given mask
        else:
            labels = _classify(m, classes, num_classes, size)
            if priors is not None:
                assert fusion is not None
                labels = _fused_labels(m, classes, num_classes, size, next(priors).to(m.device), options.fuse,
                                       fusion)
        yield SegmentResult(labels=labels.cpu(), masks=m.cpu(), slot_classes=classes.cpu())


def _excluded(later: Iterable[Tensor | None], won: list[Tensor], classes: Tensor,
              num_bg: int) -> Iterator[Tensor]:
    """Per later frame, the ``(1, S, N)`` mask that keeps the ``num_bg`` background slots off the patches an
    object slot won at the previous frame (``won[0]``: ``(N,)`` winning slot per patch, updated by the caller
    before each frame is bound), combined with ``later``'s masks."""
    for restriction in chain(later, repeat(None)):
        on_objects = classes[won[0]] > 0  # (N,)
        mask = torch.ones(1, len(classes), on_objects.numel(), dtype=torch.bool, device=on_objects.device)
        mask[0, :num_bg] = ~on_objects
        yield mask if restriction is None else mask & restriction


def _assigned_classes(masks: Tensor, labels: Tensor) -> Tensor:
    """Lock-on by assignment: the class of each slot is the first-frame class (0 background) whose region its
    frame-0 region (the patches it wins) overlaps best by IoU. ``masks (S, h, w)``, ``labels (H, W)`` -> ``(S,)``."""
    S, h, w = masks.shape
    num_objects = int(labels.max())
    patches = F.one_hot(patch_labels(labels, (h, w), num_objects).flatten(), num_objects + 1).T.float()  # (K+1, N)
    regions = F.one_hot(masks.flatten(1).argmax(0), S).T.float()  # (S, N)
    inter = regions @ patches.T  # (S, K+1)
    union = regions.sum(1, keepdim=True) + patches.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).argmax(1)


def _lock_init(model: SlotModel, options: EvalOptions) -> str:
    """``random`` or ``mask``: how lock-on starts its slots (``auto``: ``mask`` for a conditioned model)."""
    if options.lock_init == "auto":
        return "random" if model.conditioner is None else "mask"
    return options.lock_init


def _first_frame_slots(
    model: SlotModel, first_labels: Tensor | None, first: Tensor, options: EvalOptions,
    background: Tensor | None, restrict_later: bool,
) -> tuple[int | Sequence[int], Tensor | None, Tensor, int]:
    """Slot counts to draw, the ``(S, N)`` first-frame mask (None: unrestricted), the ``(S,)`` slot classes
    and the number of background slots (restricted at later frames with ``restrict_later``), from the first
    frame's ``(D, h, w)`` features."""
    mask: Tensor | None
    if options.lock_on:
        assert first_labels is not None
        counts, mask, classes = _lock_on_slots(model, first_labels, (first.shape[-2], first.shape[-1]),
                                               options.num_bg_slots, options.slots_per_class,
                                               options.num_extra_slots, background, options.label_sampling)
        if options.bg_regions == "kmeans":
            mask = _split_regions(mask, rearrange(first, "d h w -> (h w) d"))
        return counts, mask, classes, options.num_bg_slots
    counts = model.num_slots if options.num_slots is None else options.num_slots
    classes = _segments(counts, background.device if background is not None else next(model.parameters()).device)
    grouped = model.grouped
    num_bg = counts[0] if grouped and not isinstance(counts, int) else 0
    if restrict_later and num_bg:  # the original: only the background group is restricted
        mask = None if background is None else _background_slots(background, len(classes), num_bg)
    else:
        mask = _group_mask(counts, background) if grouped else None
    return counts, mask, classes, num_bg


def _lock_on_slots(
    model: SlotModel,
    first_labels: Tensor,
    grid: tuple[int, int],
    num_bg_slots: int,
    slots_per_class: int,
    num_extra_slots: int,
    background: Tensor | None,
    label_sampling: str = "area",
) -> tuple[int | Sequence[int], Tensor, Tensor]:
    """Slot counts to draw, the ``(S, N)`` first-frame mask and the ``(S,)`` slot classes of lock-on.

    With background/foreground slot groups the background slots are drawn from the background group.
    """
    valid = first_labels[first_labels != VOID_LABEL]
    num_objects = int(valid.max()) if valid.numel() else 0
    objects: list[int] | None = None
    if label_sampling == "nearest":
        patches = patch_labels_nearest(first_labels, grid)
        objects = [k for k in patches.unique().tolist() if k]
    else:
        patches = patch_labels(first_labels, grid, num_objects)
    mask, classes = lock_on_mask(patches, num_objects, num_bg_slots, slots_per_class, num_extra_slots, background,
                                 objects)
    grouped = model.grouped
    counts: int | Sequence[int] = [num_bg_slots, len(classes) - num_bg_slots] if grouped else len(classes)
    return counts, mask, classes


def _split_regions(mask: Tensor, features: Tensor) -> Tensor:
    """The ``(S, N)`` lock-on mask with the slots that share a region (the background's, an object's with
    ``slots_per_class > 1``) each restricted to one k-means region of that region's ``(N, D)`` features; a
    slot whose part is empty keeps the whole region."""
    out = mask.clone()
    rows, group = mask.unique(dim=0, return_inverse=True)
    for g, region in enumerate(rows):
        members = (group == g).nonzero()[:, 0]
        if len(members) < 2 or not region.any():
            continue
        parts = kmeans_regions(features[None], len(members), valid=region[None])[0]  # (n, N)
        out[members] = torch.where(parts.any(-1, keepdim=True), parts, region)
    return out


def _segments(counts: int | Sequence[int], device: torch.device) -> Tensor:
    """Segment ids ``1..S`` of the slots of an unsupervised run: ``(S,)``."""
    return torch.arange(1, (counts if isinstance(counts, int) else sum(counts)) + 1, device=device)


def _background_slots(background: Tensor, num_slots: int, num_bg: int) -> Tensor:
    """``(S, N)`` mask: the first ``num_bg`` slots may attend to the ``(h, w)`` background only, the rest anywhere."""
    mask = torch.ones(num_slots, background.numel(), dtype=torch.bool, device=background.device)
    mask[:num_bg] = background.flatten()
    return mask


def _group_mask(counts: int | Sequence[int], background: Tensor | None) -> Tensor | None:
    """``(S, N)`` first-frame mask of ``[bg, fg]`` slot groups from the ``(h, w)`` background, or None."""
    if background is None:
        return None
    if isinstance(counts, int) or len(counts) != 2:
        raise ValueError(f"a model with background/foreground slot groups needs num_slots = [bg, fg], got {counts}")
    return bgfg_slot_masks(background[None, None], counts[0], counts[1], "initial")[0, 0]


def _class_scores(masks: Tensor, classes: Tensor, num_objects: int) -> Tensor:
    """``(K + 1, h, w)`` score of each class: the max over its slots' ``(S, h, w)`` masks (-1 without slots)."""
    scores = masks.new_full((num_objects + 1, *masks.shape[-2:]), -1.0)
    index = classes.to(masks.device)[:, None, None].expand_as(masks)
    return scores.scatter_reduce_(0, index, masks, "amax", include_self=True)


def _classify(masks: Tensor, classes: Tensor, num_objects: int, size: tuple[int, int]) -> Tensor:
    """Per-pixel class: max over each class's slots, upsampled to ``size``, argmax. ``(S, h, w)`` -> ``(H, W)``."""
    scores = _class_scores(masks, classes, num_objects)
    return F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0].argmax(0)


def _fused_labels(masks: Tensor, classes: Tensor, num_objects: int, size: tuple[int, int], prior: Tensor,
                  weight: float, fusion: Fusion) -> Tensor:
    """Per-pixel class of ``(1 - weight)`` slot scores plus ``weight`` times the ``(K + 1, h, w)`` prior, read
    out as label propagation reads its soft labels. ``(S, h, w)`` -> ``(H, W)``."""
    scores = (1 - weight) * _class_scores(masks, classes, num_objects).clamp(min=0)
    return soft_to_labels(scores + weight * prior[: num_objects + 1].to(scores.dtype), fusion.patch_size, size,
                          fusion.norm_mask)
