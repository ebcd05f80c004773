"""Boundary matching within a disk tolerance on bit-packed planes.

A plane is a (rows, words) int64 array holding one binary image row-major, ``payload`` pixels per
word in bits ``guard .. guard + payload - 1``; the ``guard`` bits on either side repeat the edge
pixels of the neighbouring words (:func:`fill_guards`). A horizontal dilation by ``s <= guard`` is
then three word operations with no carries between words, and a vertical one ORs shifted rows, so
dilating by the disk ``x**2 + y**2 <= r**2`` (``skimage.morphology.disk``, as ``cv2.dilate`` in the
DAVIS toolkit) costs ``O(r)`` whole-tensor operations.

Shapes: ``N`` planes, ``Hp`` rows, ``Wp`` words per row.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["dilate_disk", "fill_guards", "layout", "popcount_sum"]


def layout(radius: int) -> tuple[int, int]:
    """``(guard, payload)`` bits per 64-bit word for a disk of ``radius``: guard ``min(radius, 16)``, at least 1."""
    guard = min(max(radius, 1), 16)
    return guard, 64 - 2 * guard


def _mask(lo: int, hi: int) -> int:
    """int64 constant with bits ``lo .. hi - 1`` set (two's complement when bit 63 is set)."""
    m = ((1 << hi) - 1) ^ ((1 << lo) - 1)
    return m - (1 << 64) if m >= 1 << 63 else m


def fill_guards(planes: Tensor, guard: int, payload: int) -> Tensor:
    """Copy each word's neighbours' edge pixels into its guard bits (zeros at the row ends).

    Args:
        planes: (N, Hp, Wp) int64 words; only payload bits are read.

    Returns:
        (N, Hp, Wp) int64 words with exact guard bits.
    """
    out = planes & _mask(guard, guard + payload)
    out[..., 1:] |= (planes[..., :-1] >> payload) & _mask(0, guard)
    out[..., :-1] |= (planes[..., 1:] << payload) & _mask(guard + payload, 64)
    return out


def dilate_disk(planes: Tensor, radius: int, guard: int, payload: int) -> Tensor:
    """Dilate every plane by the disk ``dx**2 + dy**2 <= radius**2``; exact in the payload bits.

    Rows of half width ``isqrt(r**2 - dy**2)`` are ORed in from the outermost (narrowest) to the
    centre, widening one horizontal dilation in place: a step by ``s`` ORs the word shifted by
    ``+-s`` bits, which stays exact while the widening since the guards were last filled is at most
    ``guard``. An arithmetic right shift repeats bit 63, which only sets bits that bit already covers.

    Args:
        planes: (N, Hp, Wp) int64 words, guard bits arbitrary.

    Returns:
        (N, Hp, Wp) int64 words; guard bits are not meaningful.
    """
    h = fill_guards(planes, guard, payload)
    out = torch.zeros_like(h)
    rows = h.shape[1]
    width = since = 0
    for dy in range(radius, -1, -1):
        target = math.isqrt(radius * radius - dy * dy)
        while width < target:
            step = min(target - width, 2 * width + 1, guard)
            if since + step > guard:
                h, since = fill_guards(h, guard, payload), 0
            h = h | (h << step) | (h >> step)
            width += step
            since += step
        if dy == 0:
            out |= h
        elif dy < rows:
            out[:, dy:] |= h[:, :-dy]
            out[:, :-dy] |= h[:, dy:]
    return out


def popcount_sum(words: Tensor) -> Tensor:
    """Set bits per leading index.

    Args:
        words: (N, ...) int64.

    Returns:
        (N,) int64 counts.
    """
    x = words.reshape(words.shape[0], -1)
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return ((x * 0x0101010101010101) >> 56).sum(1)
