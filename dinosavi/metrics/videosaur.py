"""FG-ARI and mBO as VideoSAUR and SlotContrast score them, on id maps.

Both papers' code computes these in one file, identical in the two repositories:
``videosaur/metrics.py`` of martius-lab/videosaur (commit 5d09311ba862898eedf28976990ce0a012ac69b7) and
``slotcontrast/metrics.py`` of martius-lab/slotcontrast (commit 17b42b05eba7713f14af3231a6899477af34fdee):
``VideoARI`` / ``ImageARI`` and ``VideoIoU`` / ``ImageIoU`` with ``matching="overlap"``, configured in their
YouTube-VIS configs with ``ignore_background: false`` on instance masks that have no background channel. Read
as id maps, that is (this module re-derives it; no code is copied):

- **FG-ARI**: the adjusted Rand index over the pixels of a sample (a whole clip flattened over ``T, H, W`` for
  the video metric, one frame for the image metric) that belong to an instance; background pixels have no true
  cluster and drop out. Predicted ids are every slot. Degenerate denominators (one cluster each, or singletons)
  score 1.0, as in SAVi.
- **mBO**: for each instance present in the sample, the best IoU with any predicted segment, where a segment's
  area counts every pixel of the sample (background included); the mean over those instances.
- **Void** (255, here: pixels two instances overlap): left out of both, for the truth and for the prediction,
  as their ``ignore_overlaps=True`` does (their YouTube-VIS configs leave it False, which raises on overlaps).
- **Samples without instances** are skipped (``values[non_empty]``): NaN here, left out of the means. Frames
  without instances inside a sample add no true pixels, but their predicted pixels still count in mBO's
  segment areas.

How these relate to :mod:`dinosavi.metrics.objects`: on one whole video without void, :func:`video_fg_ari`
equals ``fg_ari`` of the flattened video and :func:`video_mbo` equals
``mean_best_overlap(video_level=True)`` (tested). They differ in three places: (1) ``objects`` sees void
already mapped to background by the runner, so void pixels count in the predicted areas of mBO; here they
are left out; (2) a video without foreground scores FG-ARI 1.0 in ``objects`` (the degenerate case) and is
skipped here; (3) the frame-level variants: ``objects`` averages frames within a video and then videos, the
anchors average every frame of every sample at once (:class:`dinosavi.metrics.results.AnchorTable`).

Shapes: ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dinosavi.metrics.davis import _as_tensor
from dinosavi.metrics.protocol import VOID_LABEL

__all__ = ["AnchorSample", "anchor_sample", "ari_from_contingency", "video_fg_ari", "video_mbo"]


def _pair(true: Tensor | np.ndarray, pred: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    t, p = _as_tensor(true, "true"), _as_tensor(pred, "pred")
    if t.dim() != 3 or t.shape != p.shape:
        raise ValueError(f"`true` and `pred` must both be (T, H, W), got {tuple(t.shape)} and {tuple(p.shape)}")
    return t.long(), p.long().to(t.device)


def _contingency(true: Tensor, pred: Tensor) -> Tensor:
    """``(Ct, Cp)`` float64 pixel counts of every (true id, predicted id) pair, rows and columns in id order."""
    t_ids, t_inv = torch.unique(true, return_inverse=True)
    p_ids, p_inv = torch.unique(pred, return_inverse=True)
    counts = torch.bincount((t_inv * p_ids.numel() + p_inv).reshape(-1), minlength=t_ids.numel() * p_ids.numel())
    return counts.view(t_ids.numel(), p_ids.numel()).double()


def ari_from_contingency(n: Tensor) -> float:
    """Adjusted Rand index of a ``(Ct, Cp)`` contingency table; 1.0 when its denominator is 0."""
    a, b = n.sum(1), n.sum(0)
    total = a.sum()
    index = float((n * (n - 1)).sum())
    a_pairs, b_pairs = float((a * (a - 1)).sum()), float((b * (b - 1)).sum())
    expected = a_pairs * b_pairs / max(float(total * (total - 1)), 1.0)
    denominator = (a_pairs + b_pairs) / 2 - expected
    return 1.0 if denominator == 0 else (index - expected) / denominator


def video_fg_ari(true: Tensor | np.ndarray, pred: Tensor | np.ndarray) -> float:
    """FG-ARI of one sample: the ARI over its instance pixels (ids 1..254), all frames as one partition.

    Args:
        true: (T, H, W) ids: 0 background, 1..254 instances, 255 void (left out).
        pred: (T, H, W) predicted segment ids.

    Returns:
        The score; NaN when no pixel belongs to an instance (the anchors skip such samples).
    """
    t, p = _pair(true, pred)
    keep = (t != 0) & (t != VOID_LABEL)
    if not bool(keep.any()):
        return float("nan")
    return ari_from_contingency(_contingency(t[keep], p[keep]))


def video_mbo(true: Tensor | np.ndarray, pred: Tensor | np.ndarray) -> float:
    """mBO of one sample: per instance the best IoU over the whole (T, H, W) volume with any predicted segment,
    averaged over the instances present; void pixels are left out of every area.

    Args:
        true: (T, H, W) ids: 0 background, 1..254 instances, 255 void.
        pred: (T, H, W) predicted segment ids.

    Returns:
        The score; NaN when no instance is present.
    """
    t, p = _pair(true, pred)
    keep = t != VOID_LABEL
    t, p = t[keep], p[keep]
    t_ids = torch.unique(t)
    inter = _contingency(t, p)  # (Ct, Cp) over every kept pixel
    instance = (t_ids != 0).to(inter.device)
    if not bool(instance.any()):
        return float("nan")
    area_t, area_p = inter.sum(1, keepdim=True), inter.sum(0, keepdim=True)
    iou = inter / (area_t + area_p - inter)  # an instance present has a non-empty union with every segment
    return float(iou[instance].max(1).values.mean())


@dataclass(frozen=True)
class AnchorSample:
    """The scores of one sample (a clip the model saw from fresh slots).

    Attributes:
        fg_ari: video FG-ARI (NaN: no instance pixel).
        mbo: video mBO (NaN: no instance).
        frame_fg_ari: ``(T,)`` FG-ARI of each frame (NaN where it has no instance pixel).
        frame_mbo: ``(T,)`` mBO of each frame (NaN where it has no instance).
    """

    fg_ari: float
    mbo: float
    frame_fg_ari: list[float]
    frame_mbo: list[float]


def anchor_sample(true: Tensor | np.ndarray, pred: Tensor | np.ndarray) -> AnchorSample:
    """Video and image FG-ARI and mBO of one sample: ``(T, H, W)`` true ids (0 background, 255 void) and
    predicted ids."""
    t, p = _pair(true, pred)
    return AnchorSample(
        fg_ari=video_fg_ari(t, p), mbo=video_mbo(t, p),
        frame_fg_ari=[video_fg_ari(t[i : i + 1], p[i : i + 1]) for i in range(len(t))],
        frame_mbo=[video_mbo(t[i : i + 1], p[i : i + 1]) for i in range(len(t))],
    )
