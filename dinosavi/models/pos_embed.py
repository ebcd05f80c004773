"""2-D positional encodings for spatial-broadcast decoders, usable at any grid size.

``linear``: the two normalised coordinates in [-1, 1]. ``sine``: sinusoids of the coordinates
(Vaswani et al., 2017) defined on the base grid ``size`` and evaluated continuously, so any ``(h, w)``
is an exact interpolation. ``learnt``: a parameter of ``size`` resized bilinearly.

:class:`OriginalPositionalEncoding` is the original DINOSAVi code's layout of the same three types
(``model.style=original``): corner-aligned ``linspace`` coordinates regenerated for every grid, a sine
table on the base grid, and a Xavier-initialised ``(C, h, w)`` parameter; the last two resized bicubically.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PE_TYPES", "OriginalPositionalEncoding", "PositionalEncoding", "grid"]

PE_TYPES = ("linear", "sine", "learnt")


def grid(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [-1, 1]: ``(h, w)`` each."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return y, x


class PositionalEncoding(nn.Module):
    """A ``(C, h, w)`` positional encoding for any grid size.

    Args:
        pe_type: ``linear``, ``sine`` or ``learnt``.
        dim: channels for ``sine`` (a multiple of 4) and ``learnt``; ``linear`` always has 2.
        size: base grid ``(h, w)`` of ``sine`` frequencies and of the ``learnt`` parameter.
    """

    def __init__(self, pe_type: str = "linear", dim: int = 4, size: tuple[int, int] = (28, 28)) -> None:
        super().__init__()
        self.pe_type, self.dim, self.size = _checked(pe_type, dim, size)
        if pe_type == "learnt":
            self.weight = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, dim, *self.size), std=0.02))

    def forward(self, h: int, w: int, device: torch.device | None = None) -> Tensor:
        """The encoding at grid ``(h, w)``: ``(C, h, w)``, on ``device`` (the parameter's for learnt)."""
        if self.pe_type == "learnt":
            if (h, w) == self.size:
                return self.weight[0]
            return F.interpolate(self.weight, size=(h, w), mode="bilinear", align_corners=False)[0]
        y, x = grid(h, w, device or torch.device("cpu"))
        if self.pe_type == "linear":
            return torch.stack([y, x])
        # Frequencies scaled to the base grid: one period spans the base grid at the lowest frequency.
        n = self.dim // 4
        freqs = torch.exp(torch.arange(n, device=device, dtype=torch.float32) * (-math.log(10000.0) / max(n, 1)))
        ay = (y + 1) / 2 * self.size[0] * freqs.view(-1, 1, 1)
        ax = (x + 1) / 2 * self.size[1] * freqs.view(-1, 1, 1)
        return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()])


def _checked(pe_type: str, dim: int, size: tuple[int, int]) -> tuple[str, int, tuple[int, int]]:
    """``(pe_type, channels, (h, w))`` of a positional encoding, its options checked."""
    if pe_type not in PE_TYPES:
        raise ValueError(f"Unknown positional encoding `{pe_type}`; expected one of {PE_TYPES}")
    if pe_type == "sine" and dim % 4:
        raise ValueError(f"sine positional encoding needs dim divisible by 4, got {dim}")
    return pe_type, 2 if pe_type == "linear" else dim, (int(size[0]), int(size[1]))


class OriginalPositionalEncoding(nn.Module):
    """The original DINOSAVi's decoder positional encodings, value for value (``model.style=original``).

    ``linear``: channel 0 is ``linspace(-1, 1, h)`` along rows, channel 1 ``linspace(-1, 1, w)`` along
    columns (grid corners at -1 and 1), regenerated for every grid, so no state. ``sine``: ``dim / 2``
    sin/cos channels per axis of the patch index (frequencies ``10000^(-2i/(dim/2))``), a buffer ``pe`` of the
    base grid ``size``. ``learnt``: a ``(dim, *size)`` parameter ``pe``, Xavier-uniform initialised. Both
    tables are resized with bicubic interpolation when the grid differs from ``size``.

    Args:
        pe_type: ``linear``, ``sine`` or ``learnt``.
        dim: channels of ``sine`` (even) and ``learnt``; ``linear`` always has 2.
        size: base grid ``(h, w)`` of the ``sine``/``learnt`` table.
    """

    pe: Tensor

    def __init__(self, pe_type: str = "linear", dim: int = 4, size: tuple[int, int] = (28, 28)) -> None:
        super().__init__()
        self.pe_type, self.dim, self.size = _checked(pe_type, dim, size)
        if pe_type == "learnt":
            self.pe = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, *self.size)))
        elif pe_type == "sine":
            self.register_buffer("pe", _original_sine(self.size, dim))

    def forward(self, h: int, w: int, device: torch.device | None = None) -> Tensor:
        """The encoding at grid ``(h, w)``: ``(C, h, w)``, on ``device`` (the table's for sine/learnt)."""
        if self.pe_type == "linear":
            ys = torch.linspace(-1, 1, h, device=device)
            xs = torch.linspace(-1, 1, w, device=device)
            return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))
        if (h, w) == self.size:
            return self.pe
        return F.interpolate(self.pe[None], size=(h, w), mode="bicubic", align_corners=False)[0]


def _original_sine(size: tuple[int, int], dim: int) -> Tensor:
    """The original's sine table ``(dim, h, w)``: interleaved sin/cos of the column index in the first half
    of the channels, of the row index in the second half (``dim`` divisible by 4)."""
    h, w = size
    half = dim // 2
    freq = torch.pow(10000, -torch.arange(0, half, 2) / half)
    x = torch.einsum("i,j->ij", freq, torch.arange(w)).unsqueeze(1)  # (half/2, 1, w)
    y = torch.einsum("i,j->ij", freq, torch.arange(h)).unsqueeze(-1)  # (half/2, h, 1)
    table = torch.empty(half * 2, h, w)
    table[:half:2] = x.sin()
    table[1:half:2] = x.cos()
    table[half::2] = y.sin()
    table[half + 1::2] = y.cos()
    return table
