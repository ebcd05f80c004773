"""Slot tracking: re-order each frame's slots so that a slot index keeps standing for the same segment.

Slots carried from frame to frame keep their order by construction, but nothing stops two slots from
trading the objects they explain. A :class:`SlotTracker` keeps one *track* per slot of the first frame.
At every later frame it compares the current slots with the previous frame's:

- ``overlap``: the soft IoU ``sum(a b) / (sum(a) + sum(b) - sum(a b))`` of their masks ``a, b`` in [0, 1];
- ``slotsim``: the cosine similarity of the slot vectors.

Softmax over the previous slots with temperature ``tau`` turns the similarities into a transition
matrix ``P_t[i, j]`` (the probability that current slot ``i`` continues previous slot ``j``). Accumulated
over time, ``A_t = P_t A_{t-1}`` (``A_0 = I``) is the probability that slot ``i`` belongs to track ``k``;
the Hungarian algorithm turns it into a one-to-one assignment of slots to tracks.

Shapes: ``S`` slots, ``C`` slot size, ``h, w`` mask grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from dinosavi.evaluation.options import TRACKERS

__all__ = ["SlotTracker", "soft_iou"]


def soft_iou(a: Tensor, b: Tensor) -> Tensor:
    """Soft IoU of every mask in ``a: (S, h, w)`` with every mask in ``b: (S', h, w)`` -> ``(S, S')``.

    ``sum(a b) / (sum(a) + sum(b) - sum(a b))`` over pixels: the IoU for binary masks, low for diffuse
    masks that overlap everywhere a little, and 0 when both masks are empty.
    """
    a, b = a.flatten(1), b.flatten(1)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


class SlotTracker:
    """Keeps slot identities across frames (see the module docstring).

    Args:
        mode: ``overlap`` (masks) or ``slotsim`` (slot vectors).
        temperature: softmax temperature ``tau > 0`` of the similarities.
    """

    def __init__(self, mode: str, temperature: float = 0.1) -> None:
        if mode not in TRACKERS:
            raise ValueError(f"Unknown eval.track_mode `{mode}`; expected auto, null or one of {list(TRACKERS)}")
        if temperature <= 0:
            raise ValueError(f"eval.track_temperature must be > 0, got {temperature}")
        self.mode, self.temperature = mode, temperature
        self.previous: Tensor | None = None  # (S, C) or (S, h, w): the last frame's slots or masks
        self.tracks: Tensor | None = None  # (S, S): A_t, slot i belongs to track k

    def _item(self, slots: Tensor, masks: Tensor) -> Tensor:
        return F.normalize(slots.float(), dim=-1) if self.mode == "slotsim" else masks.float()

    def transition(self, slots: Tensor, masks: Tensor) -> Tensor:
        """``(S, S)`` transition ``P_t``: softmax over the previous slots of the similarities."""
        assert self.previous is not None
        item = self._item(slots, masks)
        sim = item @ self.previous.T if self.mode == "slotsim" else soft_iou(item, self.previous)
        return (sim / self.temperature).softmax(dim=1)

    def assign(self, slots: Tensor, masks: Tensor) -> Tensor:
        """Order of the current slots so that position ``k`` continues track ``k``.

        Args:
            slots: ``(S, C)`` slots of the current frame, in the model's order.
            masks: ``(S, h, w)`` their masks.

        Returns:
            ``(S,)`` int64 permutation: ``masks[order]`` are the masks in track order. The identity at
            the first frame.
        """
        S = slots.shape[0]
        if self.previous is None:
            self.tracks = torch.eye(S, dtype=torch.float64)
        else:
            if self.previous.shape[0] != S:
                raise ValueError(f"tracking {self.previous.shape[0]} slots, got {S}")
            assert self.tracks is not None
            self.tracks = self.transition(slots, masks).cpu().double() @ self.tracks
        self.previous = self._item(slots, masks)
        rows, cols = linear_sum_assignment(self.tracks.numpy(), maximize=True)  # rows: slots, cols: tracks
        order = torch.empty(S, dtype=torch.long)
        order[torch.as_tensor(cols)] = torch.as_tensor(rows)
        return order.to(slots.device)
