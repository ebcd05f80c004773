"""DAVIS 2017 region (J) and boundary (F) measures, vectorised over frames and objects.

Re-implements the definitions of the official toolkit (davisvideochallenge/davis2017-evaluation)
in torch, on CPU or CUDA. Nothing is dilated densely. Ground truth and prediction are fused into one
joint id map ``gt * (K+1) + pred``, compared once with its east and south neighbours; its few change
points give, for every frame and object at once, the confusion counts (J, from the horizontal runs
between change points) and the one-pixel boundaries of both maps. "Is there a boundary pixel of the
other mask within the disk" is answered per boundary pixel from grids of 8x8-pixel tiles, one int64
word each, ANDed with precomputed disk masks. The results equal the toolkit's (``cv2.dilate`` with
``skimage.morphology.disk``) exactly.

Shapes: ``T`` frames, ``H, W`` pixels, ``K`` objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SequenceScores",
    "boundary_f",
    "boundary_radius",
    "db_statistics",
    "evaluate_semisupervised",
    "f_from_counts",
    "jaccard",
    "seg2bmap",
]

VOID_LABEL = 255


@dataclass(frozen=True)
class SequenceScores:
    """Per-object, per-frame scores of one sequence.

    Attributes:
        j: (K, T') region similarity of objects 1..K on the evaluated frames, float64.
        f: (K, T') boundary F-measure, float64.
        frame_ids: (T',) indices of the evaluated frames in the input sequence.
    """

    j: Tensor
    f: Tensor
    frame_ids: Tensor


def _as_tensor(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, Tensor):
        raise ValueError(f"`{name}` must be a torch tensor or numpy array, got {type(x).__name__}")
    return t


def _check_masks(gt: Tensor, pred: Tensor, void: Tensor | None) -> None:
    if gt.dim() != 3 or gt.shape != pred.shape:
        raise ValueError(f"`gt` and `pred` must both be (T, H, W), got {tuple(gt.shape)} and {tuple(pred.shape)}")
    if void is not None and void.shape != gt.shape:
        raise ValueError(f"`void` must match the masks' shape {tuple(gt.shape)}, got {tuple(void.shape)}")


def boundary_radius(height: int, width: int, bound_th: float = 0.008) -> int:
    """Disk radius in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``.

    Raises:
        ValueError: a pixel radius (``bound_th >= 1``) that is not an integer, or a negative one.
    """
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th >= 1 is a pixel radius and must be an integer, got {bound_th}")
        return int(bound_th)
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    return math.ceil(bound_th * math.hypot(height, width))


def seg2bmap(mask: Tensor | np.ndarray) -> Tensor:
    """One-pixel boundary map of binary masks, as DAVIS ``seg2bmap`` at the input resolution.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour. In the
    last row only the east neighbour counts, in the last column only the south one, and the
    bottom-right pixel is never a boundary; this equals comparing against an edge-replicated copy.

    Args:
        mask: (T, H, W) binary masks.

    Returns:
        (T, H, W) bool boundary maps.
    """
    seg = _as_tensor(mask, "mask").bool()
    if seg.dim() != 3:
        raise ValueError(f"`mask` must be (T, H, W), got {tuple(seg.shape)}")
    b = torch.zeros_like(seg)
    b[:, :, :-1] |= seg[:, :, :-1] ^ seg[:, :, 1:]
    b[:, :-1, :] |= seg[:, :-1, :] ^ seg[:, 1:, :]
    b[:, :-1, :-1] |= seg[:, :-1, :-1] ^ seg[:, 1:, 1:]
    return b


def _changes(labels: Tensor) -> Tensor:
    """Sorted flat indices of pixels that differ from their east or their south neighbour.

    Compared on the flattened (T*H*W,) map, so a few indices at x = W-1 or y = H-1 are spurious;
    callers recheck with the edge-replicated neighbours. The change mask is written into a buffer
    whose length is a multiple of 64 and screened as int64 words in blocks of 8, so the dense
    ``nonzero`` runs on 64x fewer elements.

    Args:
        labels: (T, H, W) contiguous integer label maps.

    Returns:
        (N,) int64 indices.
    """
    flat = labels.reshape(-1)
    n, W = flat.numel(), labels.shape[-1]
    buf = torch.empty((n + 63) // 64 * 64, dtype=torch.bool, device=flat.device)
    buf[n - 1 :] = False
    torch.ne(flat[:-1], flat[1:], out=buf[: n - 1])
    buf[: n - W] |= flat[:-W] != flat[W:]
    words = buf.view(torch.uint8).view(torch.int64)  # 8 pixels per word, each byte 0 or 1
    blocks = torch.nonzero(words.view(-1, 8).amax(dim=1)).squeeze(1)
    word_ids = (blocks[:, None] * 8 + torch.arange(8, device=flat.device)).reshape(-1)
    word_ids = torch.masked_select(word_ids, torch.index_select(words.view(-1), 0, word_ids) != 0)
    cand = (word_ids[:, None] * 8 + torch.arange(8, device=flat.device)).reshape(-1)
    return torch.masked_select(cand, torch.index_select(buf, 0, cand))


def _neighbours(labels: Tensor, flat: Tensor) -> Tensor:
    """Labels of pixels ``flat`` and of their E, S, SE neighbours, edge-replicated: (N, 4), dtype of ``labels``."""
    _, H, W = labels.shape
    row = flat // W
    step_e = (flat - row * W < W - 1).long()
    step_s = (row % H < H - 1).long() * W
    idx = torch.stack([flat, flat + step_e, flat + step_s, flat + step_s + step_e], dim=1)
    return torch.index_select(labels.view(-1), 0, idx.view(-1)).view(-1, 4)


def _ids(labels: Tensor, num_objects: int) -> Tensor:
    """(T, H, W) ids with everything outside 1..K set to 0, as uint8 when K < 256 (else int32)."""
    lo, hi = (int(v) for v in torch.aminmax(labels))
    dtype = torch.uint8 if num_objects < 256 else torch.int32
    if lo < 0 or hi > num_objects:
        labels = torch.where((labels < 0) | (labels > num_objects), 0, labels)
    return labels.to(dtype).contiguous()


def _joint(gt: Tensor, pred: Tensor, num_objects: int) -> Tensor:
    """``gt * (K+1) + pred`` of the cleaned id maps: (T, H, W) uint8 when (K+1)**2 <= 256, else int32."""
    M = num_objects + 1
    g, p = _ids(gt, num_objects), _ids(pred, num_objects)
    if M * M <= 256:
        return torch.add(p, g, alpha=M)
    return torch.add(p.int(), g.int(), alpha=M)


def _boundary_keys(labels: Tensor, flat: Tensor, num_objects: int, stride: int) -> Tensor:
    """Keys ``(k-1) * stride + flat`` of the objects whose one-pixel boundary passes through each pixel.

    A pixel lies on the boundary of object ``k`` exactly when its own and its E, S, SE (edge-replicated)
    labels are not all equal and one of them is ``k``.

    Args:
        labels: (N, 4) ids of the pixels and their E, S, SE neighbours.
        flat: (N,) flat pixel indices.
        num_objects: K; ids outside 1..K are background.
        stride: key offset between objects (T * H * W).

    Returns:
        (N',) int64 keys, each (object, pixel) once.
    """
    a, e, s, se = labels.unbind(1)
    mixed = (e != a) | (s != a) | (se != a)
    keep = torch.stack([mixed, e != a, (s != a) & (s != e), (se != a) & (se != e) & (se != s)], dim=1)
    keep &= mixed[:, None] & (labels >= 1) & (labels <= num_objects)
    ids = torch.masked_select(labels, keep).long()
    return (ids - 1) * stride + torch.masked_select(flat[:, None], keep)


@dataclass(frozen=True)
class _Changes:
    """Where a (T, H, W) joint id map changes: everything J and the boundaries of both maps need.

    Attributes:
        east: (E,) sorted flat indices of pixels differing from their east neighbour (never at x = W-1).
        flat: (N,) flat indices of every pixel differing from its E, S or SE neighbour (edge-replicated).
        labels: (N, 4) joint ids of those pixels and of their E, S, SE neighbours.
    """

    east: Tensor
    flat: Tensor
    labels: Tensor


def _joint_changes(joint: Tensor) -> _Changes:
    """Change points of a joint id map, found from its east/south change map and a west-neighbour pass.

    A pixel differing only from its south-east neighbour is the west neighbour of a pixel that
    differs from its south one, so it is found without a third dense comparison.
    """
    cand = _changes(joint)
    nb = _neighbours(joint, cand)
    a, e, s, se = nb.unbind(1)
    east = torch.masked_select(cand, e != a)
    west = (torch.masked_select(cand, s != a) - 1).clamp(min=0)
    nb_w = _neighbours(joint, west)
    a_w, e_w, s_w, se_w = nb_w.unbind(1)
    only_se = (e_w == a_w) & (s_w == a_w) & (se_w != a_w)
    real = (e != a) | (s != a) | (se != a)  # drops the spurious flat-order neighbours of `_changes`
    flat = torch.cat([torch.masked_select(cand, real), torch.masked_select(west, only_se)])
    labels = torch.cat([nb[real], nb_w[only_se]])
    return _Changes(east=east, flat=flat, labels=labels)


def _confusion(joint: Tensor, east: Tensor, num_objects: int) -> Tensor:
    """Per-frame confusion counts of (gt id, pred id) pairs: (T, K+1, K+1) float64.

    Each row splits into runs of constant joint id, ending where the map differs from its east
    neighbour (``east``, never at x = W-1) or at the row end; run lengths are summed per joint id.
    """
    T, H, W = joint.shape
    M = num_objects + 1
    row_ends = torch.arange(W - 1, T * H * W, W, device=joint.device)
    stops = torch.sort(torch.cat([east, row_ends])).values  # disjoint sets, so no duplicates
    lengths = torch.diff(stops, prepend=stops.new_full((1,), -1)).double()
    index = (stops // (H * W)) * (M * M) + torch.index_select(joint.view(-1), 0, stops).long()
    return torch.bincount(index, weights=lengths, minlength=T * M * M).view(T, M, M)


_TILE = 8  # tiles of 8x8 pixels, one int64 word each


def _disk_masks(radius: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For a query pixel at each of the 64 positions of its tile, the disk's bits in each nearby tile.

    Returns:
        Tile offsets ``(dty, dtx)`` as (O, 2) int64 (offsets the disk never reaches are left out),
        and (64, O) int64 words: bit ``by * 8 + bx`` of word ``[oy * 8 + ox, o]`` is set when pixel
        ``(by, bx)`` of tile ``o`` lies within ``radius`` of pixel ``(oy, ox)`` of the query's tile.
    """
    reach = -(-radius // _TILE)
    d = torch.arange(-reach, reach + 1)
    offsets = torch.cartesian_prod(d, d)  # (O, 2)
    pos = torch.arange(_TILE)
    # dy[o, q, b] = dty * 8 + by - oy, likewise dx; q = (oy, ox), b = (by, bx)
    dy = (
        offsets[:, 0, None, None] * _TILE
        + pos.repeat_interleave(_TILE)[None, None, :]
        - pos.repeat_interleave(_TILE)[None, :, None]
    )
    dx = offsets[:, 1, None, None] * _TILE + pos.repeat(_TILE)[None, None, :] - pos.repeat(_TILE)[None, :, None]
    inside = dy * dy + dx * dx <= radius * radius  # (O, 64, 64)
    words = (inside.long() << torch.arange(64)).sum(-1)  # (O, 64); bit 63 wraps to the sign bit
    used = inside.flatten(1).any(1)
    return offsets[used].to(device), words[used].T.contiguous().to(device)


def _boundary_counts(
    gt_keys: Tensor, pred_keys: Tensor, pairs: int, height: int, width: int, radius: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Boundary pixels of each map with a boundary pixel of the other map within the disk of ``radius``.

    Keys are ``pair * H * W + y * W + x`` with ``pair`` an (object, frame) index. Both boundaries are
    written into grids of 8x8-pixel tiles, one int64 word per tile (bit ``(y % 8) * 8 + x % 8``); a
    query pixel then ANDs the words of the few tiles the disk reaches with precomputed disk masks.

    Returns:
        ``(n_pred, n_gt, pred_match, gt_match)``: boundary pixels of each map and those matched, all
        (pairs,) int64 counts.
    """
    offsets, masks = _disk_masks(radius, gt_keys.device)
    reach = -(-radius // _TILE)
    Ht = -(-height // _TILE) + 2 * reach
    Wt = -(-width // _TILE) + 2 * reach
    per_map = pairs * Ht * Wt
    grid = torch.zeros(2 * per_map, dtype=torch.int64, device=gt_keys.device)
    step = (offsets[:, 0] * Wt + offsets[:, 1])[None, :]  # (1, O)

    def locate(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        row = keys // width  # pair * H + y
        x = keys - row * width
        pair = row // height
        y = row - pair * height
        tile = (pair * Ht + (y >> 3) + reach) * Wt + (x >> 3) + reach
        return pair, tile, ((y & 7) << 3) | (x & 7)

    pair_g, tile_g, bit_g = locate(gt_keys)
    pair_p, tile_p, bit_p = locate(pred_keys)
    one = torch.ones((), dtype=torch.int64, device=grid.device)
    grid.index_add_(0, tile_g, one << bit_g)  # each (pair, pixel) once, so the sum is a bitwise OR
    grid.index_add_(0, tile_p + per_map, one << bit_p)

    def hits(tile: Tensor, bit: Tensor) -> Tensor:
        words = torch.gather(grid, 0, (tile[:, None] + step).view(-1)).view(-1, step.shape[1])  # (N, O)
        return (words & torch.index_select(masks, 0, bit)).ne(0).any(1)

    pred_hit = hits(tile_p, bit_p)
    gt_hit = hits(tile_g + per_map, bit_g)
    n_pred = torch.bincount(pair_p, minlength=pairs)
    n_gt = torch.bincount(pair_g, minlength=pairs)
    pred_match = torch.bincount(torch.masked_select(pair_p, pred_hit), minlength=pairs)
    gt_match = torch.bincount(torch.masked_select(pair_g, gt_hit), minlength=pairs)
    return n_pred, n_gt, pred_match, gt_match


def f_from_counts(n_pred: Tensor, n_gt: Tensor, pred_match: Tensor, gt_match: Tensor) -> Tensor:
    """Boundary F from pixel counts, with the toolkit's conventions for empty boundaries.

    Both empty: precision = recall = 1. Only the prediction empty: precision 1, recall 0. Only the
    ground truth empty: precision 0, recall 1. F = 0 when precision + recall = 0.

    Args:
        n_pred: (...) prediction boundary pixels.
        n_gt: (...) ground-truth boundary pixels.
        pred_match: (...) prediction boundary pixels within the tolerance of the ground truth.
        gt_match: (...) ground-truth boundary pixels within the tolerance of the prediction.

    Returns:
        (...) float64 F-measure.
    """
    n_pred, n_gt = n_pred.double(), n_gt.double()
    has_p, has_g = n_pred > 0, n_gt > 0
    precision = torch.where(has_p & has_g, pred_match.double() / n_pred.clamp(min=1), (~has_p).double())
    recall = torch.where(has_p & has_g, gt_match.double() / n_gt.clamp(min=1), (~has_g).double())
    total = precision + recall
    return torch.where(total == 0, torch.zeros_like(total), 2 * precision * recall / total.clamp(min=1e-300))


_GRID_BYTES = 1 << 26  # frames are scored in chunks whose tile grids stay under 64 MiB


def _scores(gt: Tensor, pred: Tensor, num_objects: int, radius: int) -> tuple[Tensor, Tensor]:
    """J and F of objects 1..K for (T, H, W) integer id maps: two (K, T) float64 tensors.

    Ids outside 1..K count as background. Both maps are combined into one joint id map
    ``gt * (K+1) + pred``; its change points give the confusion counts of every object (J) and the
    one-pixel boundaries of every object in both maps (F), all frames and objects at once.
    """
    T, H, W = gt.shape
    tile_words = (-(-H // _TILE) + 2 * -(-radius // _TILE)) * (-(-W // _TILE) + 2 * -(-radius // _TILE))
    frames = max(1, _GRID_BYTES // (16 * tile_words * num_objects))
    if frames < T:
        parts = [_scores(gt[t : t + frames], pred[t : t + frames], num_objects, radius) for t in range(0, T, frames)]
        return torch.cat([j for j, _ in parts], dim=1), torch.cat([f for _, f in parts], dim=1)
    K, M, stride = num_objects, num_objects + 1, T * H * W
    joint = _joint(gt, pred, K)
    ch = _joint_changes(joint)
    confusion = _confusion(joint, ch.east, K)
    inter = confusion.diagonal(dim1=1, dim2=2)[:, 1:].T  # (K, T)
    union = confusion.sum(2)[:, 1:].T + confusion.sum(1)[:, 1:].T - inter
    j = torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1))
    gt_keys = _boundary_keys(torch.div(ch.labels, M, rounding_mode="floor"), ch.flat, K, stride)
    pred_keys = _boundary_keys(ch.labels % M, ch.flat, K, stride)
    n_pred, n_gt, pred_match, gt_match = _boundary_counts(gt_keys, pred_keys, K * T, H, W, radius)
    f = f_from_counts(n_pred, n_gt, pred_match, gt_match).view(K, T)
    return j, f


def jaccard(gt: Tensor | np.ndarray, pred: Tensor | np.ndarray, void: Tensor | np.ndarray | None = None) -> Tensor:
    """Region similarity J (intersection over union) per frame.

    Void pixels are removed from both intersection and union; an empty union scores 1.

    Args:
        gt: (T, H, W) binary ground truth.
        pred: (T, H, W) binary prediction.
        void: optional (T, H, W) pixels to ignore.

    Returns:
        (T,) float64.
    """
    g, p = _as_tensor(gt, "gt").bool(), _as_tensor(pred, "pred").bool()
    v = None if void is None else _as_tensor(void, "void").bool().to(g.device)
    _check_masks(g, p, v)
    p = p.to(g.device)
    valid = torch.ones_like(g) if v is None else ~v
    inter = (g & p & valid).sum(dim=(1, 2)).double()
    union = ((g | p) & valid).sum(dim=(1, 2)).double()
    return torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1))


def boundary_f(
    gt: Tensor | np.ndarray,
    pred: Tensor | np.ndarray,
    void: Tensor | np.ndarray | None = None,
    bound_th: float = 0.008,
) -> Tensor:
    """Boundary F-measure per frame, as DAVIS ``db_eval_boundary``.

    Void pixels are cleared from both masks before their boundaries are taken (as the toolkit's
    ``seg2bmap(mask * ~void)``); nothing else is masked. A boundary pixel matches when a boundary
    pixel of the other mask lies within the disk ``x**2 + y**2 <= r**2``, ``r`` from
    :func:`boundary_radius`.

    Args:
        gt: (T, H, W) binary ground truth.
        pred: (T, H, W) binary prediction.
        void: optional (T, H, W) pixels to ignore.
        bound_th: tolerance, a fraction of the image diagonal (< 1) or a pixel radius (>= 1).

    Returns:
        (T,) float64.
    """
    g, p = _as_tensor(gt, "gt").bool(), _as_tensor(pred, "pred").bool()
    v = None if void is None else _as_tensor(void, "void").bool().to(g.device)
    _check_masks(g, p, v)
    p = p.to(g.device)
    if v is not None:
        g, p = g & ~v, p & ~v
    H, W = g.shape[1:]
    radius = boundary_radius(H, W, bound_th)
    return _scores(g.to(torch.uint8), p.to(torch.uint8), 1, radius)[1][0]


def db_statistics(per_frame: Tensor | np.ndarray) -> tuple[float, float, float]:
    """Mean, recall and decay of a per-frame measure, as DAVIS ``db_statistics``.

    Mean is the NaN-ignoring mean; recall the fraction of frames scoring above 0.5; decay the mean of
    the first minus the mean of the last of 4 bins, bin ``i`` spanning frames ``ids[i]..ids[i+1]``
    inclusive with ``ids = round(linspace(1, T, 5) + 1e-10) - 1``. The toolkit stores ``ids`` as
    ``uint8``, which wraps for sequences longer than 256 frames; here the indices do not wrap.

    Args:
        per_frame: (T,) values, NaN for frames to skip.

    Returns:
        ``(mean, recall, decay)`` as floats (NaN where a mean has no frames).
    """
    x = _as_tensor(per_frame, "per_frame").double().flatten().cpu()
    n = x.numel()
    ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)
    mean = float(torch.nanmean(x)) if n else math.nan
    recall = float((x > 0.5).double().mean()) if n else math.nan
    first = x[int(ids[0]) : int(ids[1]) + 1]
    last = x[int(ids[3]) : int(ids[4]) + 1]
    decay = float(torch.nanmean(first) - torch.nanmean(last)) if n else math.nan
    return mean, recall, decay


def evaluate_semisupervised(
    gt: Tensor | np.ndarray,
    pred: Tensor | np.ndarray,
    num_objects: int | None = None,
    bound_th: float = 0.008,
) -> SequenceScores:
    """Per-object J and F of one sequence under the DAVIS semi-supervised protocol.

    Frames ``1..T-2`` are scored (the first, given, frame and the last are excluded). Void (255)
    and any ground-truth id above the object count count as background, as in the toolkit, which
    reads annotations with 255 set to 0 and scores ``gt == k`` with no void mask. A prediction id
    that never appears scores like an all-empty prediction.

    Args:
        gt: (T, H, W) integer ground-truth ids, 0 background (uint8 is fastest).
        pred: (T, H, W) integer predicted ids.
        num_objects: K; by default the largest id in the first annotated frame.
        bound_th: boundary tolerance, see :func:`boundary_f`.

    Returns:
        Scores with ``j`` and ``f`` of shape (K, T-2).

    Raises:
        ValueError: mismatched shapes, fewer than 3 frames, or a predicted id above K.
    """
    g, p = _as_tensor(gt, "gt"), _as_tensor(pred, "pred")
    _check_masks(g, p, None)
    if g.dtype.is_floating_point or p.dtype.is_floating_point or g.dtype == torch.bool:
        raise ValueError(f"`gt` and `pred` must be integer id maps, got {g.dtype} and {p.dtype}")
    if g.shape[0] < 3:
        raise ValueError(f"semi-supervised scoring needs at least 3 frames, got {g.shape[0]}")
    p = p.to(g.device)
    if num_objects is None:
        first = g[0]
        num_objects = int(torch.where(first == VOID_LABEL, 0, first).max())
    g, p = g[1:-1].contiguous(), p[1:-1].contiguous()
    top = int(p.max())
    if top > num_objects or (p.dtype.is_signed and int(p.min()) < 0):
        raise ValueError(f"prediction ids must lie in 0..{num_objects} (objects in the first frame), got {top}")
    _, H, W = g.shape
    frame_ids = torch.arange(1, g.shape[0] + 1)
    if num_objects == 0:
        empty = torch.zeros(0, g.shape[0], dtype=torch.float64, device=g.device)
        return SequenceScores(j=empty, f=empty.clone(), frame_ids=frame_ids)
    j, f = _scores(g, p, num_objects, boundary_radius(H, W, bound_th))
    return SequenceScores(j=j, f=f, frame_ids=frame_ids)
