"""Dense label propagation in the style of DINO's ``eval_video_segmentation.py``: the baseline.

Each frame's affinity against all context frames is built at once, ``(C, N, N)``, multiplied by a dense
``(N, N)`` neighbourhood mask repeated over the context, top-k filtered column-wise by thresholding at
the k-th value, normalised and multiplied with the context's labels. Written from the paper's and the
reference's description; kept only to measure :mod:`dinosavi.evaluation.propagate` against and to test
that both give the same labels.

Shapes: ``C`` context frames, ``K`` classes, ``D`` channels, ``N = h*w`` patches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from dinosavi.evaluation.propagate import (
    DINO,
    PropagationParams,
    PropagationResult,
    first_frame_labels,
    soft_to_labels,
)

__all__ = ["neighbourhood_mask", "propagate_frame_dense", "propagate_sequence_dense"]


def neighbourhood_mask(h: int, w: int, radius: int) -> Tensor:
    """``(N, N)`` float: 1 where key patch ``n`` lies within Chebyshev distance ``radius`` of query patch ``q``."""
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    near = ((rows[:, None] - rows[None, :]).abs() <= radius) & ((cols[:, None] - cols[None, :]).abs() <= radius)
    return near.float()


def propagate_frame_dense(
    query: Tensor, keys: Tensor, labels: Tensor, grid: tuple[int, int], params: PropagationParams
) -> Tensor:
    """Soft labels ``(K, N)`` of one frame; ``query (D, N)``, ``keys (C, D, N)``, ``labels (C, K, N)``, normalised."""
    h, w = grid
    C = keys.shape[0]
    aff = torch.exp(torch.bmm(query.T[None].expand(C, -1, -1), keys) / params.temperature)  # (C, N_query, N_key)
    if params.size_mask_neighborhood > 0:
        mask = neighbourhood_mask(h, w, params.size_mask_neighborhood)[None].repeat(C, 1, 1)
        if params.first_frame_unrestricted:
            mask[0] = 1.0
        aff *= mask
    aff = aff.transpose(2, 1).reshape(-1, h * w)  # (C * N_key, N_query)
    top, _ = torch.topk(aff, dim=0, k=params.topk)
    aff[aff < top.min(dim=0).values] = 0
    aff = aff / aff.sum(dim=0, keepdim=True)
    segs = labels.transpose(2, 1).reshape(-1, labels.shape[1]).T  # (K, C * N_key)
    return segs @ aff


@torch.inference_mode()
def propagate_sequence_dense(
    features: Iterable[Tensor], first_labels: Tensor, patch_size: int, params: PropagationParams = DINO
) -> PropagationResult:
    """The same protocol as :func:`dinosavi.evaluation.propagate.propagate_sequence`, affinities built densely."""
    size = (first_labels.shape[-2], first_labels.shape[-1])
    ids = torch.where(first_labels == 255, 0, first_labels)
    num_classes = int(ids.max()) + 1
    first: tuple[Tensor, Tensor] | None = None
    queue: deque[tuple[Tensor, Tensor]] = deque(maxlen=params.n_last_frames)
    preds, max_context = [ids], 0
    for f in features:
        grid = (f.shape[-2], f.shape[-1])
        feat = F.normalize(f.float().flatten(1), dim=0)
        if first is None:
            first = (feat, first_frame_labels(first_labels, grid, num_classes).flatten(1))
            continue
        context = [first, *queue]
        max_context = max(max_context, len(context))
        keys = torch.stack([k for k, _ in context])
        labels = torch.stack([s for _, s in context])
        soft = propagate_frame_dense(feat, keys, labels, grid, params)
        if params.n_last_frames > 0:
            queue.append((feat, soft))
        preds.append(soft_to_labels(soft.reshape(-1, *grid), patch_size, size, params.norm_mask))
    return PropagationResult(labels=torch.stack(preds), max_context=max_context)
