"""Object-discovery metrics: FG-ARI, mean best overlap and Hungarian-matched mIoU.

Shapes: ``B`` batch, ``N`` pixels, ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from dinosavi.metrics.davis import _as_tensor
from dinosavi.metrics.protocol import DISCOVERY_METRICS

__all__ = ["DISCOVERY_METRICS", "discovery_scores", "fg_ari", "fg_ari_per_frame", "mean_best_overlap", "miou"]



def fg_ari(true_mask: Tensor | np.ndarray, pred_mask: Tensor | np.ndarray, ignore_background: bool = True) -> Tensor:
    """Adjusted Rand index between two partitions, over foreground pixels (SAVi / OCL convention).

    Degenerate cases: when the ARI denominator (max index minus expected index) is 0 the score is
    1.0, as in OCL/SAVi. This covers fewer than 2 scored pixels (e.g. no foreground) and both
    partitions being a single cluster, or both being all singletons.

    Args:
        true_mask: (B, N) ground-truth ids; id 0 is background.
        pred_mask: (B, N) predicted ids.
        ignore_background: score only pixels whose true id is not 0.

    Returns:
        (B,) float64.
    """
    t, p = _as_tensor(true_mask, "true_mask"), _as_tensor(pred_mask, "pred_mask")
    if t.shape != p.shape or t.dim() != 2:
        raise ValueError(f"`true_mask` and `pred_mask` must both be (B, N), got {tuple(t.shape)}, {tuple(p.shape)}")
    p = p.to(t.device)
    B = t.shape[0]
    t_ids, t_inv = torch.unique(t, return_inverse=True)
    p_ids, p_inv = torch.unique(p, return_inverse=True)
    Ct, Cp = t_ids.numel(), p_ids.numel()
    code = (torch.arange(B, device=t.device)[:, None] * Ct + t_inv) * Cp + p_inv  # (B, N)
    if ignore_background:
        code = code[t != 0]
    # contingency table per row: one pair histogram, O(B * Ct * Cp) memory however long N is
    n_ij = torch.bincount(code.reshape(-1), minlength=B * Ct * Cp).view(B, Ct, Cp).double()
    a = n_ij.sum(2)
    b = n_ij.sum(1)
    n = a.sum(1)
    rindex = (n_ij * (n_ij - 1)).sum((1, 2))
    a_pairs = (a * (a - 1)).sum(1)
    b_pairs = (b * (b - 1)).sum(1)
    expected = a_pairs * b_pairs / (n * (n - 1)).clamp(min=1)
    max_index = (a_pairs + b_pairs) / 2
    denom = max_index - expected
    ari = (rindex - expected) / torch.where(denom == 0, torch.ones_like(denom), denom)
    return torch.where(denom == 0, torch.ones_like(ari), ari)


def _overlaps(true: Tensor, pred: Tensor, exclude_background: bool, video_level: bool) -> tuple[Tensor, Tensor]:
    """IoU of every true id against every predicted id, from one pair histogram.

    Returns:
        IoU (F, Ct, Cp) float64 and true-id areas (F, Ct), with ``F = 1`` at video level and
        ``F = T`` per frame; ``Ct`` excludes id 0 when ``exclude_background``.
    """
    t_ids, t_inv = torch.unique(true, return_inverse=True)
    p_ids, p_inv = torch.unique(pred, return_inverse=True)
    Ct, Cp = t_ids.numel(), p_ids.numel()
    n_f = 1 if video_level else true.shape[0]
    frame = torch.zeros(1, dtype=torch.long, device=true.device)
    if not video_level:
        frame = torch.arange(n_f, device=true.device).view(-1, 1, 1)
    code = (frame * Ct + t_inv) * Cp + p_inv
    inter = torch.bincount(code.reshape(-1), minlength=n_f * Ct * Cp).view(n_f, Ct, Cp).double()
    area_t, area_p = inter.sum(2), inter.sum(1)
    union = area_t[:, :, None] + area_p[:, None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    if exclude_background:
        fg = t_ids != 0
        iou, area_t = iou[:, fg], area_t[:, fg]
    return iou, area_t


def _video(x: Tensor | np.ndarray, name: str) -> Tensor:
    t = _as_tensor(x, name)
    if t.dim() != 3:
        raise ValueError(f"`{name}` must be (T, H, W), got {tuple(t.shape)}")
    return t


def mean_best_overlap(
    true: Tensor | np.ndarray,
    pred: Tensor | np.ndarray,
    exclude_background: bool = True,
    video_level: bool = True,
) -> float:
    """mBO: for each ground-truth object the best IoU over predicted segments, averaged over objects.

    At video level the IoU is taken over the whole (T, H, W) volume. At frame level it is computed
    per frame over the objects present in that frame, and the per-frame means are averaged over the
    frames that have at least one object. NaN when no object is present.

    Args:
        true: (T, H, W) ground-truth ids; 0 is background.
        pred: (T, H, W) predicted segment ids.
        exclude_background: do not score ground-truth id 0.
        video_level: IoU over the video volume instead of per frame.
    """
    t, p = _video(true, "true"), _video(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"`true` {tuple(t.shape)} and `pred` {tuple(p.shape)} must match")
    p = p.to(t.device)
    iou, area = _overlaps(t, p, exclude_background, video_level)  # (F, Ct, Cp), (F, Ct)
    if iou.shape[1] == 0:
        return float("nan")
    best = iou.max(dim=2).values  # (F, Ct)
    if video_level:
        return float(best.mean())
    present = area > 0
    per_frame = (best * present).sum(1) / present.sum(1).clamp(min=1)
    has = present.any(1)
    return float(per_frame[has].mean()) if bool(has.any()) else float("nan")


def miou(
    true: Tensor | np.ndarray,
    pred: Tensor | np.ndarray,
    exclude_background: bool = True,
) -> float:
    """Mean IoU after a one-to-one Hungarian matching of ground-truth objects to predicted segments.

    IoU is taken over the whole (T, H, W) volume; objects left unmatched (more objects than
    segments) score 0. NaN when there is no object.

    Args:
        true: (T, H, W) ground-truth ids; 0 is background.
        pred: (T, H, W) predicted segment ids.
        exclude_background: do not score ground-truth id 0.
    """
    t, p = _video(true, "true"), _video(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"`true` {tuple(t.shape)} and `pred` {tuple(p.shape)} must match")
    iou = _overlaps(t, p.to(t.device), exclude_background, video_level=True)[0][0]  # (Ct, Cp)
    if iou.shape[0] == 0:
        return float("nan")
    rows, cols = linear_sum_assignment(-iou.cpu().numpy())
    return float(iou[rows, cols].sum() / iou.shape[0])


def fg_ari_per_frame(true: Tensor | np.ndarray, pred: Tensor | np.ndarray) -> Tensor:
    """FG-ARI of every frame on its own: ``(T, H, W)`` ids -> ``(T,)`` float64, NaN for frames without
    foreground (the drift curve of a video)."""
    t, p = _video(true, "true"), _video(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"`true` {tuple(t.shape)} and `pred` {tuple(p.shape)} must match")
    scores = fg_ari(t.flatten(1), p.flatten(1))
    return torch.where((t != 0).flatten(1).any(1), scores, torch.full_like(scores, float("nan")))


def _nanmean(x: Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if x.numel() else float("nan")


def discovery_scores(true: Tensor | np.ndarray, pred: Tensor | np.ndarray) -> dict[str, float]:
    """Object-discovery scores of one video, background (id 0) excluded, as reported on MOVi.

    ``FG-ARI``: over the whole video as one partition (SAVi); ``FG-ARI-frame``: the mean over frames
    with foreground; ``FG-ARI-early`` / ``FG-ARI-late``: the same over the first quarter of the frames
    (0-5 of 24) and over the second half (12-23 of 24), which shows drift; ``mBO`` / ``mBO-frame``:
    :func:`mean_best_overlap` at video / frame level; ``mIoU``: :func:`miou`.

    Args:
        true: (T, H, W) ground-truth ids; 0 is background (void 255 should be mapped to 0 first).
        pred: (T, H, W) predicted segment ids.

    Returns:
        One value per name in :data:`DISCOVERY_METRICS` (NaN where undefined).
    """
    t, p = _video(true, "true"), _video(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"`true` {tuple(t.shape)} and `pred` {tuple(p.shape)} must match")
    per_frame = fg_ari_per_frame(t, p)
    T = len(per_frame)
    return {
        "FG-ARI": float(fg_ari(t.reshape(1, -1), p.reshape(1, -1))[0]),
        "FG-ARI-frame": _nanmean(per_frame),
        "FG-ARI-early": _nanmean(per_frame[: -(-T // 4)]),
        "FG-ARI-late": _nanmean(per_frame[T // 2 :]),
        "mBO": mean_best_overlap(t, p, video_level=True),
        "mBO-frame": mean_best_overlap(t, p, video_level=False),
        "mIoU": miou(t, p),
    }
