"""DAVIS 2017 region (J) and boundary (F) measures, vectorised over frames and objects.

Re-implements the definitions of the official toolkit (davisvideochallenge/davis2017-evaluation)
in torch, on CPU or CUDA, with identical values. Nothing is dilated at full resolution: both id maps
are cropped to their objects and fused into one joint map whose few change points give every
object's confusion counts and one-pixel boundaries (:mod:`dinosavi.metrics.joint`); boundaries are
matched within the toolkit's disk (``cv2.dilate`` with ``skimage.morphology.disk``) on bit-packed
planes (:mod:`dinosavi.metrics.boundary`). On CPU, the compiled kernel of :mod:`dinosavi.metrics.compiled`
takes over when it is built (same values, bit for bit).

Shapes: ``T`` frames, ``H, W`` pixels, ``K`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

import dinosavi.metrics.compiled as compiled
from dinosavi.metrics.boundary import layout, match_counts
from dinosavi.metrics.joint import analyse, crop
from dinosavi.metrics.protocol import VOID_LABEL, boundary_radius, db_statistics

__all__ = [
    "VOID_LABEL",
    "SequenceScores",
    "boundary_f",
    "boundary_radius",
    "db_statistics",
    "evaluate_semisupervised",
    "f_from_counts",
    "jaccard",
    "seg2bmap",
]


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


_PLANE_BYTES = 1 << 25  # frames are scored in chunks whose bit planes stay under 32 MiB


def _scores(gt: Tensor, pred: Tensor, num_objects: int, radius: int) -> tuple[Tensor, Tensor]:
    """J and F of objects 1..K for (T, H, W) integer id maps: two (K, T) float64 tensors.

    Ids outside 1..K in ``gt`` count as background; ``pred`` must hold ids in 0..K. On CPU the compiled
    kernel computes them when it is built (:mod:`dinosavi.metrics.compiled`, same values). Else both maps are
    cropped and fused once (:mod:`dinosavi.metrics.joint`), giving the confusion counts (J) and the
    boundary bit planes of every object in both maps, matched within the disk (F) by
    :mod:`dinosavi.metrics.boundary`, all frames and objects at once.
    """
    T = gt.shape[0]
    K = num_objects
    if gt.device.type == "cpu" and compiled.available() and K <= compiled.MAX_ID:
        pairs = torch.arange(1, K + 1, dtype=torch.int32).repeat_interleave(2).view(K, 2).numpy()
        j_np, f_np = compiled.pair_scores(gt.numpy(), pred.numpy(), pairs, K, K, radius)
        return torch.from_numpy(j_np), torch.from_numpy(f_np)
    cropped = crop(gt, pred, K)
    if cropped is None:  # both maps empty everywhere: J = F = 1
        ones = torch.ones(K, T, dtype=torch.float64, device=gt.device)
        return ones, ones.clone()
    _, Hc, Wc = cropped.gt.shape
    payload = layout(radius)[1]
    frames = max(1, _PLANE_BYTES // (16 * K * Hc * -(-Wc // payload)))
    j_parts, f_parts = [], []
    for t0 in range(0, T, frames):
        part = replace(cropped, gt=cropped.gt[t0 : t0 + frames], pred=cropped.pred[t0 : t0 + frames])
        counts = analyse(part, K, K, radius)
        conf = counts.confusion
        inter = conf.diagonal(dim1=1, dim2=2)[:, 1:].T  # (K, T')
        union = conf.sum(2)[:, 1:].T + conf.sum(1)[:, 1:].T - inter
        j_parts.append(torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1)))
        pred_match, gt_match = match_counts(counts.pred_planes.flatten(0, 1), counts.gt_planes.flatten(0, 1), radius)
        f = f_from_counts(counts.n_pred, counts.n_gt, pred_match.view(K, -1), gt_match.view(K, -1))
        f_parts.append(f)
    return torch.cat(j_parts, 1), torch.cat(f_parts, 1)


def _binary_inputs(
    gt: Tensor | np.ndarray, pred: Tensor | np.ndarray, void: Tensor | np.ndarray | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(T, H, W) bool masks on ``gt``'s device, shapes checked."""
    g, p = _as_tensor(gt, "gt").bool(), _as_tensor(pred, "pred").bool()
    v = None if void is None else _as_tensor(void, "void").bool().to(g.device)
    _check_masks(g, p, v)
    return g, p.to(g.device), v


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
    g, p, v = _binary_inputs(gt, pred, void)
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
    g, p, v = _binary_inputs(gt, pred, void)
    if v is not None:
        g, p = g & ~v, p & ~v
    H, W = g.shape[1:]
    radius = boundary_radius(H, W, bound_th)
    return _scores(g.to(torch.uint8), p.to(torch.uint8), 1, radius)[1][0]


def evaluate_semisupervised(
    gt: Tensor | np.ndarray,
    pred: Tensor | np.ndarray,
    num_objects: int | None = None,
    bound_th: float = 0.008,
) -> SequenceScores:
    """Per-object J and F of one sequence under the DAVIS semi-supervised task.

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
