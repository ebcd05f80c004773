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

__all__ = ["dilate_disk", "fill_guards", "layout", "match_counts", "popcount_sum"]


def layout(radius: int) -> tuple[int, int]:
    """``(guard, payload)`` bits per 64-bit word for a disk of ``radius``: guard ``min(radius, 16)``, at least 1."""
    guard = min(max(radius, 1), 16)
    return guard, 64 - 2 * guard


def _mask(lo: int, hi: int) -> int:
    """int64 constant with bits ``lo .. hi - 1`` set (two's complement when bit 63 is set)."""
    m = ((1 << hi) - 1) ^ ((1 << lo) - 1)
    return m - (1 << 64) if m >= 1 << 63 else m


def fill_guards(planes: Tensor, guard: int, payload: int, scratch: Tensor) -> None:
    """Copy, in place, each word's neighbours' edge pixels into its guard bits (zeros at the row ends).

    Args:
        planes: (N, Hp, Wp) int64 words; only payload bits are read.
        scratch: (N, Hp, Wp) int64 buffer, overwritten.
    """
    scratch[..., 0] = 0
    torch.bitwise_right_shift(planes[..., :-1], payload, out=scratch[..., 1:])
    scratch &= _mask(0, guard)
    planes &= _mask(guard, guard + payload)
    planes |= scratch
    scratch[..., -1] = 0
    torch.bitwise_left_shift(planes[..., 1:], payload, out=scratch[..., :-1])
    scratch &= _mask(guard + payload, 64)
    planes |= scratch


def dilate_disk(planes: Tensor, radius: int, guard: int, payload: int) -> Tensor:
    """Dilate every plane by the disk ``dx**2 + dy**2 <= radius**2``; exact in the payload bits.

    Rows of half width ``isqrt(r**2 - dy**2)`` are ORed in from the outermost (narrowest) to the
    centre, widening one horizontal dilation in place: a step by ``s`` ORs the word shifted by
    ``+-s`` bits, which stays exact while the widening since the guards were last filled is at most
    ``guard``. An arithmetic right shift repeats bit 63, which only sets bits that bit already covers.
    Works in place on preallocated buffers: fresh multi-megabyte tensors cost page faults on CPU.

    Args:
        planes: (N, Hp, Wp) int64 words, guard bits arbitrary; left unchanged.

    Returns:
        (N, Hp, Wp) int64 words; guard bits are not meaningful.
    """
    h, left, right = planes.clone(), torch.empty_like(planes), torch.empty_like(planes)
    fill_guards(h, guard, payload, left)
    out = torch.zeros_like(h)
    rows = h.shape[1]
    width = since = 0
    for dy in range(radius, -1, -1):
        target = math.isqrt(radius * radius - dy * dy)
        while width < target:
            step = min(target - width, 2 * width + 1, guard)
            if since + step > guard:
                fill_guards(h, guard, payload, left)
                since = 0
            torch.bitwise_left_shift(h, step, out=left)
            torch.bitwise_right_shift(h, step, out=right)
            h |= left
            h |= right
            width += step
            since += step
        if dy == 0:
            out |= h
        elif dy < rows:
            out[:, dy:] |= h[:, :-dy]
            out[:, :-dy] |= h[:, dy:]
    return out


def popcount_sum(words: Tensor) -> Tensor:
    """Set bits per leading index; ``words`` is overwritten.

    Args:
        words: (N, ...) contiguous int64.

    Returns:
        (N,) int64 counts.
    """
    x = words.view(words.shape[0], -1)
    t = torch.empty_like(x)
    torch.bitwise_right_shift(x, 1, out=t)
    t &= 0x5555555555555555
    x -= t
    torch.bitwise_right_shift(x, 2, out=t)
    t &= 0x3333333333333333
    x &= 0x3333333333333333
    x += t
    torch.bitwise_right_shift(x, 4, out=t)
    x += t
    x &= 0x0F0F0F0F0F0F0F0F
    x *= 0x0101010101010101
    x >>= 56
    return x.sum(1)


def match_counts(a: Tensor, b: Tensor, radius: int) -> tuple[Tensor, Tensor]:
    """Pixels of each plane of ``a`` within the disk of a pixel of the same plane of ``b``, and vice versa.

    Args:
        a: (N, Hp, Wp) int64 planes in the :func:`layout` of ``radius``, guard bits zero.
        b: (N, Hp, Wp) likewise.

    Returns:
        ``(a_matched, b_matched)``, each (N,) int64.
    """
    guard, payload = layout(radius)
    n = a.shape[0]
    dilated = dilate_disk(torch.cat([a, b]), radius, guard, payload)
    dilated[:n] &= b
    dilated[n:] &= a
    counts = popcount_sum(dilated)
    return counts[n:], counts[:n]
