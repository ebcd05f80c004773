"""Semi-supervised video object segmentation with slots: first-frame lock-on, slots carried through time.

At the first frame each object of the given mask gets ``slots_per_class`` slots that may only attend
to its patches, and ``num_bg_slots`` slots take the background. Later frames start from the previous
frame's slots with no mask. A class's score is the max over its slots' masks; scores are upsampled to
the frame size before the argmax.

Shapes: ``T`` frames, ``S`` slots, ``K`` objects (ids 1..K; 0 background), ``H, W`` pixels,
``h, w`` feature grid, ``N = h*w``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dinosavi.models.dinosaur import Dinosaur

__all__ = ["LockOnResult", "lock_on_mask", "patch_labels", "segment_sequence"]

VOID = 255


@dataclass
class LockOnResult:
    """Segmentation of one sequence.

    Attributes:
        labels: ``(T, H, W)`` int64 predicted object ids (frame 0 is the given mask).
        masks: ``(T, S, h, w)`` per-slot masks (decoder alpha or slot attention).
        slot_classes: ``(S,)`` the object id each slot stands for (0 background).
    """

    labels: Tensor
    masks: Tensor
    slot_classes: Tensor


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
    ids = torch.where(labels == VOID, torch.zeros_like(labels), labels)
    onehot = F.one_hot(ids.clamp(max=num_objects), num_objects + 1).permute(2, 0, 1).float()  # (K+1, H, W)
    frac = F.adaptive_avg_pool2d(onehot[None], grid)[0]  # (K+1, h, w): exact area fractions
    out = frac.argmax(0)
    for k in range(1, num_objects + 1):
        if onehot[k].any() and not (out == k).any():
            out.view(-1)[frac[k].flatten().argmax()] = k
    return out


def lock_on_mask(patches: Tensor, num_objects: int, num_bg_slots: int, slots_per_class: int) -> tuple[Tensor, Tensor]:
    """The first-frame attention mask and the class of every slot.

    Args:
        patches: ``(h, w)`` patch ids from :func:`patch_labels`.
        num_objects: ``K``.
        num_bg_slots: background slots (first in the slot order).
        slots_per_class: slots per object.

    Returns:
        mask ``(S, N)`` bool (True: the slot may attend to the patch) and slot classes ``(S,)`` int64,
        with ``S = num_bg_slots + K * slots_per_class``.
    """
    classes = torch.cat([
        torch.zeros(num_bg_slots, dtype=torch.long),
        torch.arange(1, num_objects + 1).repeat_interleave(slots_per_class),
    ]).to(patches.device)
    mask = classes[:, None] == patches.flatten()[None, :]
    return mask, classes


@torch.no_grad()
def segment_sequence(
    model: Dinosaur,
    features: Iterable[Tensor],
    first_labels: Tensor,
    *,
    num_bg_slots: int,
    slots_per_class: int = 1,
    output: str = "alpha",
    num_iters: int | None = None,
    ini_iters: int | None = None,
    generator: torch.Generator | None = None,
) -> LockOnResult:
    """Segment a video from its first-frame mask.

    Args:
        model: the trained slot model (in eval mode).
        features: per-frame features ``(D, h, w)`` in order — a ``(T, D, h, w)`` tensor, or a generator
            that encodes frames chunk by chunk so long videos never hold all features at once.
        first_labels: ``(H, W)`` int64 ids of frame 0 (255 void); predictions get this size.
        num_bg_slots: background slots.
        slots_per_class: slots per object.
        output: ``alpha`` (decoder masks) or ``slot`` (slot-attention weights).
        num_iters: iterations for frames after the first; the model's when None.
        ini_iters: iterations at the first frame; the model's ``ini_iters`` when None.
        generator: source of the initial slots.
    """
    if output not in ("alpha", "slot"):
        raise ValueError(f"Unknown eval output `{output}`; expected alpha or slot")
    device = next(model.parameters()).device
    size = (first_labels.shape[-2], first_labels.shape[-1])
    first_labels = first_labels.to(device)
    valid = first_labels[first_labels != VOID]
    num_objects = int(valid.max()) if valid.numel() else 0

    slots = None
    masks, labels = [], []
    classes = torch.empty(0, dtype=torch.long)
    for f in features:
        f = f.to(device)
        h, w = f.shape[-2:]
        if slots is None:
            mask, classes = lock_on_mask(
                patch_labels(first_labels, (h, w), num_objects), num_objects, num_bg_slots, slots_per_class
            )
            # with background/foreground slot groups, background slots come from the background group
            grouped = model.slot_init.num_groups == 2
            counts = [num_bg_slots, len(classes) - num_bg_slots] if grouped else len(classes)
            init = model.init_slots(1, counts, generator)
            first_iters = ini_iters or getattr(model, "ini_iters", None) or num_iters
            slots, attention = model.bind(f[None], init, first_iters, mask[None])
        else:
            slots, attention = model.bind(f[None], model.propagate(slots), num_iters)
        m = model.decode(slots, (h, w)).alpha[0] if output == "alpha" else attention[0]  # (S, h, w)
        masks.append(m.cpu())
        labels.append(_classify(m, classes, num_objects, size).cpu())
    pred = torch.stack(labels)
    pred[0] = torch.where(first_labels == VOID, 0, first_labels).cpu()
    return LockOnResult(labels=pred, masks=torch.stack(masks), slot_classes=classes.cpu())


def _classify(masks: Tensor, classes: Tensor, num_objects: int, size: tuple[int, int]) -> Tensor:
    """Per-pixel class: max over each class's slots, upsampled to ``size``, argmax. ``(S, h, w)`` -> ``(H, W)``."""
    scores = masks.new_full((num_objects + 1, *masks.shape[-2:]), -1.0)
    index = classes.to(masks.device)[:, None, None].expand_as(masks)
    scores = scores.scatter_reduce_(0, index, masks, "amax", include_self=True)
    up = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
    return up.argmax(0)
