"""Label propagation with frozen features: the DINO / CRW semi-supervised VOS baseline.

Each new frame's patches attend to the patches of a context — the first frame and the ``n_last_frames``
previous predictions — through cosine affinities of L2-normalised features. A query patch may only
attend to context patches within a square neighbourhood of ``size_mask_neighborhood`` patches (Chebyshev
distance; the first frame is exempt with ``first_frame_unrestricted``, as in CRW), keeps its ``topk``
strongest affinities, softmaxes them with ``temperature`` and averages the context's soft labels with
those weights. Soft labels stay at feature resolution; they are upsampled by the patch size, resized to
the frame and argmaxed at full resolution.

Memory stays bounded: the context holds at most ``n_last_frames + 1`` frames, and affinities are
computed for a band of query rows at a time, against only the context rows within reach of the
neighbourhood, so no ``N x N`` (let alone ``T x N x N``) affinity is ever built.

:func:`dinosavi.evaluation.runner.evaluate_propagation` runs it over a DAVIS-layout split (``mode=propagate``)
with the settings of
:class:`dinosavi.evaluation.options.PropagationParams` (DINO's ``eval_video_segmentation.py``,
Caron et al. 2021, by default; ``propagate=crw``: Jabri et al. 2020).

Shapes: ``T`` frames, ``C`` context frames, ``K`` classes (background and objects ``1..K-1``),
``D`` channels, ``h, w`` feature grid, ``N = h*w``, ``H, W`` pixels.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from dinosavi.evaluation.options import PropagationParams
from dinosavi.metrics.protocol import VOID_LABEL

__all__ = [
    "DINO",
    "PropagatedFrame",
    "PropagationResult",
    "first_frame_labels",
    "propagate_frame",
    "propagate_frames",
    "propagate_sequence",
    "soft_to_labels",
]

DINO = PropagationParams()  # DINO's settings, the defaults; ``propagate=crw`` sets CRW's


@dataclass
class PropagationResult:
    """Propagation of one sequence.

    Attributes:
        labels: ``(T, H, W)`` int64 predicted ids (frame 0 is the given mask, void as background).
        max_context: the most context frames any frame attended to (at most ``n_last_frames + 1``).
    """

    labels: Tensor
    max_context: int


@dataclass
class PropagatedFrame:
    """Propagation of one frame, as :func:`propagate_frames` yields it.

    Attributes:
        labels: ``(H, W)`` int64 predicted ids (frame 0: the given mask, void as background).
        soft: ``(K, h, w)`` soft labels at feature resolution (frame 0: the mask's one-hot).
        context: context frames this frame attended to (0 at frame 0).
    """

    labels: Tensor
    soft: Tensor
    context: int


def first_frame_labels(labels: Tensor, grid: tuple[int, int], num_classes: int) -> Tensor:
    """Soft labels of the first frame: one-hot of the mask resized (nearest) to the feature grid, as DINO.

    Args:
        labels: ``(H, W)`` int64 ids (255 void, counted as background).
        grid: ``(h, w)``.
        num_classes: ``K`` (background included).

    Returns:
        ``(K, h, w)`` float32 one-hot.
    """
    ids = torch.where(labels == VOID_LABEL, torch.zeros_like(labels), labels)
    small = F.interpolate(ids[None, None].float(), size=grid, mode="nearest-exact")[0, 0].long()
    return rearrange(F.one_hot(small, num_classes).float(), "h w k -> k h w")


def _rows_per_chunk(h: int, w: int, radius: int, num_context: int, budget: int) -> int:
    """The most query rows whose affinities against their reachable context rows fit ``budget`` entries."""
    rows = h
    while rows > 1:
        band = h if radius == 0 else min(h, rows + 2 * radius)
        if rows * w * num_context * band * w <= budget:
            break
        rows = max(1, rows // 2)
    return rows


def propagate_frame(
    query: Tensor, keys: Sequence[Tensor], labels: Sequence[Tensor], grid: tuple[int, int], params: PropagationParams
) -> Tensor:
    """Soft labels of one frame from its context, computed one band of query rows at a time.

    Args:
        query: ``(D, N)`` L2-normalised features of the frame.
        keys: ``C`` context features ``(D, N)``, L2-normalised; ``keys[0]`` is the first frame.
        labels: ``C`` context soft labels ``(K, N)``.
        grid: ``(h, w)`` with ``h * w = N``.
        params: the propagation settings.

    Returns:
        ``(K, N)`` soft labels (each column sums to 1).
    """
    h, w = grid
    radius = params.size_mask_neighborhood
    rows_all = torch.arange(h, device=query.device)
    cols = torch.arange(w, device=query.device)
    col_ok = (cols[:, None] - cols[None, :]).abs() <= radius  # (w, w)
    out = query.new_empty(labels[0].shape[0], h * w)
    step = _rows_per_chunk(h, w, radius, len(keys), params.chunk_elements)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        b0, b1 = (0, h) if radius == 0 else (max(0, r0 - radius), min(h, r1 + radius))
        q = query[:, r0 * w:r1 * w].T  # (Q, D)
        row_ok = (rows_all[r0:r1, None] - rows_all[None, b0:b1]).abs() <= radius  # (rows, band rows)
        mask = rearrange(row_ok[:, None, :, None] & col_ok[None, :, None, :], "r i b j -> (r i) (b j)")
        logits, values = [], []
        for c, (key, lab) in enumerate(zip(keys, labels)):
            full = radius == 0 or (c == 0 and params.first_frame_unrestricted)
            s, e = (0, h * w) if full else (b0 * w, b1 * w)
            logit = q @ key[:, s:e]  # (Q, e - s)
            if not full:
                logit = logit.masked_fill_(~mask, float("-inf"))
            logits.append(logit)
            values.append(lab[:, s:e])
        aff = torch.cat(logits, dim=1)  # (Q, M)
        top, index = aff.topk(min(params.topk, aff.shape[1]), dim=1)  # (Q, k)
        weights = torch.softmax(top / params.temperature, dim=1)
        gathered = torch.cat(values, dim=1).T[index]  # (Q, k, K)
        out[:, r0 * w:r1 * w] = torch.einsum("qk,qkc->cq", weights, gathered)
    return out


def soft_to_labels(soft: Tensor, patch_size: int, size: tuple[int, int], norm_mask: bool) -> Tensor:
    """Full-resolution ids from soft labels at feature resolution.

    Args:
        soft: ``(K, h, w)`` soft labels.
        patch_size: the feature stride; labels are first upsampled by it (bilinear), as in DINO.
        size: ``(H, W)`` of the original frame.
        norm_mask: min-max normalise each class's upsampled map (classes with a zero map are left as is).

    Returns:
        ``(H, W)`` int64 ids, the argmax at full resolution.
    """
    up = F.interpolate(soft[None], scale_factor=patch_size, mode="bilinear", align_corners=False)[0]
    if norm_mask:
        low = up.amin(dim=(1, 2), keepdim=True)
        high = up.amax(dim=(1, 2), keepdim=True)
        scaled = (up - low) / (high - low).clamp_min(1e-12)
        up = torch.where(high > 0, scaled, up)
    if tuple(up.shape[-2:]) != size:
        up = F.interpolate(up[None], size=size, mode="bilinear", align_corners=False)[0]
    return up.argmax(0)


def propagate_sequence(
    features: Iterable[Tensor], first_labels: Tensor, patch_size: int, params: PropagationParams = DINO
) -> PropagationResult:
    """Propagate the first frame's mask through a video.

    Args:
        features: per-frame features ``(D, h, w)`` in order — a ``(T, D, h, w)`` tensor or a generator
            that encodes frames as it goes; only the context's features are kept.
        first_labels: ``(H, W)`` int64 ids of frame 0 (255 void); predictions get this size.
        patch_size: the encoder's feature stride in pixels.
        params: the propagation settings (:data:`DINO`, the defaults, or the ``propagate=crw`` preset).

    Returns:
        Labels ``(T, H, W)`` and the largest context used.
    """
    frames = list(propagate_frames(features, first_labels, patch_size, params))
    return PropagationResult(labels=torch.stack([f.labels for f in frames]),
                             max_context=max(f.context for f in frames))


@torch.inference_mode()
def propagate_frames(
    features: Iterable[Tensor], first_labels: Tensor, patch_size: int, params: PropagationParams = DINO
) -> Iterator[PropagatedFrame]:
    """Propagate the first frame's mask through a video, frame by frame: the streaming form of
    :func:`propagate_sequence` (same arguments, same labels). The next frame's features are pulled only
    when the caller asks for the next frame; only the context (at most ``n_last_frames + 1`` frames) is
    kept.

    Yields:
        Per frame, a :class:`PropagatedFrame`.

    Raises:
        ValueError: ``features`` holds no frame.
    """
    size = (first_labels.shape[-2], first_labels.shape[-1])
    valid = first_labels[first_labels != VOID_LABEL]
    num_classes = int(valid.max()) + 1 if valid.numel() else 1
    first_key: Tensor | None = None
    first_soft = torch.empty(0)
    memory: deque[tuple[Tensor, Tensor]] = deque(maxlen=params.n_last_frames)
    for f in features:
        grid = (f.shape[-2], f.shape[-1])
        feat = F.normalize(rearrange(f.float(), "d h w -> d (h w)"), dim=0)
        if first_key is None:
            first_key = feat
            one_hot = first_frame_labels(first_labels.to(f.device), grid, num_classes)
            first_soft = rearrange(one_hot, "k h w -> k (h w)")
            yield PropagatedFrame(torch.where(first_labels == VOID_LABEL, 0, first_labels).cpu(), one_hot.cpu(), 0)
            continue
        keys = [first_key] + [k for k, _ in memory]
        labels = [first_soft] + [s for _, s in memory]
        soft = propagate_frame(feat, keys, labels, grid, params)
        if params.n_last_frames > 0:
            memory.append((feat, soft))
        grid_soft = rearrange(soft, "k (h w) -> k h w", h=grid[0])
        yield PropagatedFrame(soft_to_labels(grid_soft, patch_size, size, params.norm_mask).cpu(), grid_soft.cpu(),
                              len(keys))
    if first_key is None:
        raise ValueError("propagate_sequence got no frames; expected at least one")
