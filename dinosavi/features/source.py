"""Where features come from: read from the feature store, or encoded now. The one place that decides.

A :class:`FeatureSource` is the frozen encoder at one resolution and, when the run has a feature store
(``features.store``), that resolution's space of the store. Evaluation asks it for the features of a
sequence (:meth:`FeatureSource.frames`); training for those of a batch (:meth:`FeatureSource.batch`),
and :func:`training_clips` picks what the training dataset yields. The resolutions themselves (the
``train`` and ``eval`` resize rules) are defined once, in :func:`dinosavi.features.space.resolution`.

Shapes: ``B`` clips, ``T`` frames, ``D`` channels, ``h, w`` feature grid, ``H, W`` pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from torch import Tensor

from dinosavi.data.videos import ClipDataset, FrameClips, VideoClips
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.features.clips import StoreClips
from dinosavi.features.digests import file_digest
from dinosavi.features.memory import FeatureClips
from dinosavi.features.space import FeatureSpace, Resolution
from dinosavi.features.store import FeatureStore

__all__ = ["FeatureSource", "training_clips"]

log = logging.getLogger(__name__)


@dataclass
class FeatureSource:
    """The features of frames at one resolution: from ``space`` (the feature store) when given, else
    encoded now by ``encoder``, ``batch_size`` frames at a time.

    Build it with :meth:`create`, which gives the store space the same resolution as the encoder's rule.
    """

    encoder: FrozenEncoder
    resolution: Resolution
    batch_size: int = 32
    space: FeatureSpace | None = None

    @classmethod
    def create(cls, encoder: FrozenEncoder, resolution: Resolution, batch_size: int = 32,
               store: FeatureStore | None = None) -> FeatureSource:
        """A source at ``resolution``; with ``store``, reading (and filling) its space of that resolution."""
        space = None if store is None else FeatureSpace(store, encoder, resolution, batch_size)
        return cls(encoder, resolution, batch_size, space)

    @property
    def rule(self) -> ResizeRule:
        """The resize rule frames are encoded at."""
        return self.resolution.rule

    def frames(self, frames: Tensor, paths: list[Path] | None = None,
               name: str = "sequence") -> Iterator[tuple[Tensor, Tensor | None]]:
        """Per-frame features ``(D, h, w)`` and CLS attention ``(heads, h, w)`` (None without a CLS token) of
        ``frames: (T, 3, H, W)`` uint8, in order.

        With a store, the sequence ``name`` is read by the digests of its source files ``paths`` (one per
        frame); when absent or corrupt it is encoded and written back. Without one, frames are encoded
        ``batch_size`` at a time as the caller iterates.

        Raises:
            ValueError: a store without one path per frame.
        """
        chunks: Iterable[tuple[Tensor, Tensor | None]]
        if self.space is not None:
            if paths is None or len(paths) != len(frames):
                raise ValueError(f"{name}: the feature store needs one source path per frame, got {paths}")
            stored, _ = self.space.get(name, [file_digest(p) for p in paths], lambda: frames)
            chunks = [(stored.features, stored.cls_attention)]
        else:
            batches = frames.split(self.batch_size)
            encoded = (self.encoder.encode(chunk, self.rule, self.batch_size) for chunk in batches)
            chunks = ((out.features, out.cls_attention) for out in encoded)
        for features, attention in chunks:
            for t in range(len(features)):
                yield features[t], None if attention is None else attention[t]

    def stream(self, frames: Iterable[Tensor], chunk: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Per-frame features ``(D, h, w)`` and CLS attention ``(heads, h, w)`` (None without a CLS token) of a
        stream of ``(3, H, W)`` uint8 frames (a video being decoded), ``chunk`` frames read and encoded at a
        time; never from the store (a stream has no source files to key it by)."""
        frames = iter(frames)
        while batch := list(islice(frames, chunk)):
            out = self.encoder.encode(torch.stack(batch), self.rule, chunk)
            for t in range(len(batch)):
                yield out.features[t], None if out.cls_attention is None else out.cls_attention[t]

    def features(self, frames: Tensor, paths: list[Path] | None = None, name: str = "sequence") -> Iterator[Tensor]:
        """Per-frame features ``(D, h, w)`` only; arguments as in :meth:`frames`."""
        for features, _ in self.frames(frames, paths, name):
            yield features

    def batch(self, batch: Tensor | dict[str, Tensor],
              device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """Frames ``(B, T, 3, H, W)`` uint8, features ``(B, T, D, h, w)`` and CLS attention
        ``(B, T, heads, h, w)`` (None when the encoder has none) on ``device`` for one training batch.

        A batch is raw clips (encoded now, on ``device``), or a dict of ``frames``, ``features`` and
        optionally ``cls_attention`` that :func:`training_clips` read from the store or from memory (after
        :meth:`~dinosavi.data.videos.ClipDataset.prepare`).
        """
        if isinstance(batch, dict):
            cls_attention = batch.get("cls_attention")
            return (batch["frames"], batch["features"].to(device, non_blocking=True),
                    None if cls_attention is None else cls_attention.to(device, non_blocking=True))
        B, T = batch.shape[:2]
        encoded = self.encoder.encode(batch.flatten(0, 1), self.rule, batch_size=self.batch_size)
        attention = encoded.cls_attention
        return (batch, encoded.features.clone().unflatten(0, (B, T)),  # clone: usable by autograd
                None if attention is None else attention.clone().unflatten(0, (B, T)))


def training_clips(clips: ClipDataset, source: FeatureSource, in_memory: bool = False) -> ClipDataset:
    """What training iterates over: ``clips`` themselves, raw ``(T, 3, H, W)`` uint8 (encoded online by
    :meth:`FeatureSource.batch`), or dicts of ``frames`` and precomputed ``features`` read from the store
    when ``source`` has one (missing frames encoded and written first, with a progress bar; an interrupted
    pass continues where it stopped), or, with ``in_memory``, each frame encoded when first drawn and then
    held in memory (nothing up front; :meth:`ClipDataset.prepare` adds the features)."""
    if source.space is not None:
        if in_memory:
            log.info("features.store is set: training reads the store, features.in_memory is not used")
        assert isinstance(clips, FrameClips | VideoClips)
        return StoreClips(clips, source.space)
    if in_memory:
        return FeatureClips(clips, source.encoder, source.rule)
    return clips
