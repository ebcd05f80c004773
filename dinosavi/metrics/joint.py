"""One pass over a joint (ground truth, prediction) id map: confusion counts and boundary bit planes.

The torch path's counterpart of the compiled kernel (:mod:`dinosavi.metrics.compiled`): the same counts,
computed for all frames and objects at once with whole-tensor operations instead of a loop over
pixels (``tests/metrics/reference.py`` states the definitions plainly; the tests check both agree).

* What is packed. Both maps are cropped to the box holding every non-zero id (plus the one-pixel rim
  whose neighbours matter) and fused into one joint id per pixel, ``gt << s | pred`` (4-bit halves in a
  uint8 when both maps have at most 15 objects, else 16-bit halves in an int32), with at least one zero
  pad column and one zero pad row per frame. Read as int64 words, that is 8 (or 2) pixels per word. Two
  dense comparisons (with a copy shifted by one pixel, and with the next row) flag the few words
  holding a pixel that differs from its east, south or south-east neighbour; everything else runs on
  those words only.
* J. Along a row the joint id is constant between east changes (the pad column ends every row), so a
  run's length is the distance between the change that ends it and the one before. A changing pixel at
  flat position ``f`` closes a run of its own id, ``+(f + 1)``, and opens one of its east neighbour's,
  ``-(f + 1)``; summed per (frame, gt id, pred id) these give the confusion counts. Runs of the
  background pair cross rows and frames, so the (0, 0) cell is no count; J never reads it.
* F. A pixel lies on the DAVIS ``seg2bmap`` boundary of object ``k`` when its own, east, south and
  south-east ids (edge-replicated at the image border) include ``k`` and are not all equal. Each such
  (object, pixel) pair sets one bit in that object's plane, in the guarded word layout of
  :mod:`dinosavi.metrics.boundary`, which dilates the planes by the disk and counts the matches.

Shapes: ``T`` frames, ``H, W`` pixels, ``Kg``/``Kp`` objects of the two maps, ``Hc`` cropped rows,
``Wp`` words per plane row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dinosavi.metrics.boundary import layout

__all__ = ["JointCounts", "JointCrop", "analyse", "crop"]


@dataclass(frozen=True)
class JointCrop:
    """Both id maps cropped to their non-zero box plus a one-pixel rim.

    Attributes:
        gt: (T, Hc, Wc) ground-truth ids in 0..Kg.
        pred: (T, Hc, Wc) predicted ids in 0..Kp.
        right: the crop ends at the image's last column (east neighbours replicate there).
        bottom: the crop ends at the image's last row.
        touches: the crop meets any image border, so pad pixels can neighbour non-zero ids.
    """

    gt: Tensor
    pred: Tensor
    right: bool
    bottom: bool
    touches: bool


@dataclass(frozen=True)
class JointCounts:
    """What J and F need from one joint map.

    Attributes:
        confusion: (T, Kg+1, Kp+1) float64 pixel counts of (gt id, pred id); the (0, 0) cell is no count.
        gt_planes: (Kg, T, Hc, Wp) int64 boundary bit planes of the ground-truth objects.
        pred_planes: (Kp, T, Hc, Wp) int64 boundary bit planes of the predicted objects.
        n_gt: (Kg, T) boundary pixels per ground-truth object.
        n_pred: (Kp, T) boundary pixels per predicted object.
    """

    confusion: Tensor
    gt_planes: Tensor
    pred_planes: Tensor
    n_gt: Tensor
    n_pred: Tensor


def crop(gt: Tensor, pred: Tensor, num_gt: int) -> JointCrop | None:
    """Crop (T, H, W) id maps to the box of non-zero ids; ``None`` when both are all background.

    Ground-truth ids outside 1..``num_gt`` (void 255, higher ids, negatives) become 0. The box
    grows by one pixel up and left (those pixels see the objects as east/south neighbours) and one
    down and right (so the crop's last row and column are background unless at the image border).
    """
    g_top = gt.amax(0)
    fg = (g_top > 0) | (pred.amax(0) > 0)
    rows, cols = torch.nonzero(fg.any(1)).squeeze(1), torch.nonzero(fg.any(0)).squeeze(1)
    if rows.numel() == 0:
        return None
    H, W = fg.shape
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, H)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, W)
    g, p = gt[:, y0:y1, x0:x1], pred[:, y0:y1, x0:x1]
    if int(g_top.max()) > num_gt or g.dtype.is_signed:
        g = torch.where((g < 0) | (g > num_gt), 0, g)
    touches = x0 == 0 or y0 == 0 or x1 == W or y1 == H
    return JointCrop(gt=g, pred=p, right=x1 == W, bottom=y1 == H, touches=touches)


def _nonzero(mask: Tensor) -> Tensor:
    """(N,) int64 indices of the true entries of a 1-D bool tensor.

    On CPU this goes through ``numpy.flatnonzero`` (zero-copy both ways), several times faster than
    ``torch.nonzero`` there; elsewhere it is ``torch.nonzero``.
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask).squeeze(1)


def _take(x: Tensor, index: Tensor) -> Tensor:
    """Entries ``index`` of ``x`` flattened."""
    return torch.index_select(x.reshape(-1), 0, index)


def _object_keys(a: Tensor, e: Tensor, s: Tensor, se: Tensor) -> tuple[Tensor, Tensor]:
    """Objects whose boundary passes through each pixel, from its own, E, S, SE ids.

    Args:
        a, e, s, se: (N,) contiguous ids of one map at the pixels and their E, S, SE neighbours.

    Returns:
        ``(ids, pixel)``: (N',) object ids (>= 1) and the pixel (index into the inputs) each comes
        from; each (object, pixel) once, none where the four ids agree.
    """
    e_a, s_a, se_a = e != a, s != a, se != a
    keep = torch.stack(
        [
            (a != 0) & (e_a | s_a | se_a),
            (e != 0) & e_a,
            (s != 0) & s_a & (s != e),
            (se != 0) & se_a & (se != e) & (se != s),
        ],
        1,
    )  # (N, 4): each id once, and only where the four differ (implied by every column but the first)
    sel = _nonzero(keep.view(-1))
    return _take(torch.stack([a, e, s, se], 1), sel).long(), sel >> 2


@dataclass(frozen=True)
class _Words:
    """The flagged words of a fused joint map: those holding a pixel that differs from a neighbour.

    Attributes:
        index: (Nf,) flat index of each flagged word in the padded frames.
        a: (Nf, ppw) joint ids of the word's pixels.
        e: (Nf, ppw) joint ids of their east neighbours.
        s: (Nf, ppw) joint ids of their south neighbours.
        se: (Nf, ppw) joint ids of their south-east neighbours.
        shift: the prediction's bits in a joint id (``gt << shift | pred``).
        ppw: pixels per int64 word.
        rows: padded rows per frame (``Hc + 1``).
        width: padded pixels per row, a multiple of ``ppw``.
    """

    index: Tensor
    a: Tensor
    e: Tensor
    s: Tensor
    se: Tensor
    shift: int
    ppw: int
    rows: int
    width: int


def _fuse(joint: JointCrop, num_gt: int, num_pred: int) -> _Words:
    """Fuse the cropped maps into one padded joint map and keep the words where a pixel differs from its
    E, S or SE neighbour (the module docstring's first step)."""
    g, p = joint.gt, joint.pred
    T, Hc, Wc = g.shape
    device = g.device
    wide = max(num_gt, num_pred) > 15
    dtype, shift = (torch.int32, 16) if wide else (torch.uint8, 4)
    ppw = 2 if wide else 8  # pixels per int64 word
    Wj, Hj = (Wc + ppw) // ppw * ppw, Hc + 1  # >= 1 zero pad column and exactly 1 zero pad row
    R, n = Wj // ppw, T * Hj * Wj // ppw  # words per row, words in the frames

    buf = torch.empty((T * Hj + 2) * Wj, dtype=dtype, device=device)
    frames = buf[: T * Hj * Wj].view(T, Hj, Wj)
    frames[:, :, Wc:] = 0
    frames[:, Hc] = 0
    buf[T * Hj * Wj :] = 0
    torch.add(p.to(dtype), g.to(dtype), alpha=1 << shift, out=frames[:, :Hc, :Wc])
    words = buf.view(torch.int64)
    east = torch.empty(n + R, dtype=torch.int64, device=device)  # word i holds pixels ppw*i+1 .. ppw*i+ppw
    east.view(dtype)[:] = buf[1 : (n + R) * ppw + 1]

    flags = torch.ne(words[:n], east[:n])
    south = torch.ne(words[:n], words[R : n + R])
    flags |= south
    flags[:-1] |= south[1:]  # a pixel differing only from its SE neighbour sits west of a south change
    idx = _nonzero(flags)  # (Nf,) flagged words

    def pixels(w: Tensor) -> Tensor:
        return w.view(dtype).view(-1, ppw)  # (Nf, ppw)

    below = idx + R
    return _Words(
        index=idx,
        a=pixels(torch.index_select(words, 0, idx)),
        e=pixels(torch.index_select(east, 0, idx)),
        s=pixels(torch.index_select(words, 0, below)),
        se=pixels(torch.index_select(east, 0, below)),
        shift=shift,
        ppw=ppw,
        rows=Hj,
        width=Wj,
    )


def _confusion(w: _Words, T: int, num_gt: int, num_pred: int) -> Tensor:
    """(T, Kg+1, Kp+1) float64 confusion counts from the east changes of the flagged words (J)."""
    # runs end at east changes; pixel f closes a run of its id and opens one of its east neighbour's.
    ppw, shift = w.ppw, w.shift
    log_ppw = ppw.bit_length() - 1
    frame_px, Mg, Mp, low = w.rows * w.width, num_gt + 1, num_pred + 1, (1 << shift) - 1
    sel = _nonzero((w.a != w.e).view(-1))
    f = (torch.index_select(w.index, 0, sel >> log_ppw) << log_ppw) + (sel & (ppw - 1))
    la, le = _take(w.a, sel).long(), _take(w.e, sel).long()
    t_a = torch.div(f, frame_px, rounding_mode="floor")
    t_e = torch.div(f + 1, frame_px, rounding_mode="floor")
    cell = torch.cat([(t_a * Mg + (la >> shift)) * Mp + (la & low), (t_e * Mg + (le >> shift)) * Mp + (le & low)])
    weight = (f + 1).double()
    confusion = torch.bincount(cell, weights=torch.cat([weight, -weight]), minlength=T * Mg * Mp)
    return confusion.view(T, Mg, Mp)


def _boundary_pixels(w: _Words, joint: JointCrop) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Every pixel on a boundary of either map, with edge replication at the image's last row/column.

    Returns:
        ``(t, y, x, labels)``: (Nm,) frame, row and column of each boundary pixel in the crop, and the
        (Nm,) joint ids of the pixel and its E, S, SE neighbours.
    """
    _, Hc, Wc = joint.gt.shape
    R, log_ppw = w.width // w.ppw, w.ppw.bit_length() - 1
    a, e, s, se = w.a, w.e, w.s, w.se
    row = torch.div(w.index, R, rounding_mode="floor")
    t = torch.div(row, w.rows, rounding_mode="floor")
    y, xw = row - t * w.rows, (w.index - row * R) << log_ppw  # per flagged word
    lane = torch.arange(w.ppw, device=a.device)
    if joint.right:
        last = (xw[:, None] + lane) == Wc - 1
        e, se = torch.where(last, a, e), torch.where(last, s, se)
    if joint.bottom:
        last = (y == Hc - 1)[:, None]
        s, se = torch.where(last, a, s), torch.where(last, e, se)
    sel = _nonzero(((e != a) | (s != a) | (se != a)).view(-1))
    word = sel >> log_ppw
    t_m, y_m = torch.index_select(t, 0, word), torch.index_select(y, 0, word)
    x_m = torch.index_select(xw, 0, word) + (sel & (w.ppw - 1))
    if joint.touches:  # pad pixels next to non-zero ids at the image border: drop them
        valid = _nonzero((x_m < Wc) & (y_m < Hc))
        sel, t_m, y_m, x_m = (torch.index_select(v, 0, valid) for v in (sel, t_m, y_m, x_m))
    return t_m, y_m, x_m, [_take(v, sel) for v in (a, e, s, se)]


def _planes(ids_of: list[Tensor], frame: Tensor, pixel_word: Tensor, pixel_bit: Tensor, count: int,
            shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """One map's boundary bit planes and their pixel counts.

    Args:
        ids_of: 4 x (Nm,) ids of that map at the boundary pixels and their E, S, SE neighbours.
        frame: (Nm,) frame of each boundary pixel.
        pixel_word: (Nm,) word of each pixel within its object's (T, Hc, Wp) planes.
        pixel_bit: (Nm,) bit of each pixel in its word.
        count: the map's objects, K.
        shape: ``(T, Hc, Wp)``.

    Returns:
        (K, T, Hc, Wp) int64 planes and the (K, T) boundary pixels per object.
    """
    T, Hc, Wp = shape
    ids, rows = _object_keys(*ids_of)
    plane = (ids - 1) * T + torch.index_select(frame, 0, rows)
    out = torch.zeros(count * T * Hc * Wp, dtype=torch.int64, device=frame.device)
    key = (ids - 1) * (T * Hc * Wp) + torch.index_select(pixel_word, 0, rows)
    one = torch.ones((), dtype=torch.int64, device=frame.device)
    out.index_add_(0, key, one << torch.index_select(pixel_bit, 0, rows))  # each bit once: sum == OR
    n_px = torch.bincount(plane, minlength=count * T).view(count, T)
    return out.view(count, T, Hc, Wp), n_px


def analyse(joint: JointCrop, num_gt: int, num_pred: int, radius: int) -> JointCounts:
    """Confusion counts and boundary bit planes of a cropped pair of id maps (see the module docstring)."""
    T, Hc, Wc = joint.gt.shape
    device = joint.gt.device
    words = _fuse(joint, num_gt, num_pred)
    confusion = _confusion(words, T, num_gt, num_pred)
    t_m, y_m, x_m, labels = _boundary_pixels(words, joint)

    guard, payload = layout(radius)
    Wp = -(-Wc // payload)
    xs = torch.arange(Wc, device=device)
    word_of_x, bit_of_x = torch.div(xs, payload, rounding_mode="floor"), xs % payload + guard
    pixel_word = (t_m * Hc + y_m) * Wp + torch.index_select(word_of_x, 0, x_m)
    pixel_bit = torch.index_select(bit_of_x, 0, x_m)
    low = (1 << words.shift) - 1
    gt_planes, n_gt = _planes([v >> words.shift for v in labels], t_m, pixel_word, pixel_bit, num_gt, (T, Hc, Wp))
    pred_planes, n_pred = _planes([v & low for v in labels], t_m, pixel_word, pixel_bit, num_pred, (T, Hc, Wp))
    return JointCounts(confusion=confusion, gt_planes=gt_planes, pred_planes=pred_planes, n_gt=n_gt, n_pred=n_pred)
