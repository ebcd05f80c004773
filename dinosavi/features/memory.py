"""Training clips of features computed once and held in memory (``features.in_memory=true``).

A frozen encoder gives the same features for a frame every time it is drawn, so small datasets
(the synthetic set, DAVIS) are encoded once and clips are sliced from the stored features, which
takes training off the encoder's critical path. Features, and the CLS attention of encoders that
have one, are kept as fp16. A video that cannot be decoded is skipped when the source skips bad
files (training), an error otherwise.

Shapes: ``T`` frames, ``D`` channels, ``heads`` CLS attention heads, ``h, w`` feature grid, ``H, W`` pixels.
"""

from __future__ import annotations

import logging
import time

import torch
from rich.progress import Progress
from torch import Tensor

from dinosavi.data.badfiles import Skip, UnreadableFileError
from dinosavi.data.videos import ClipDataset
from dinosavi.encoders.base import FrozenEncoder, ResizeRule

__all__ = ["FeatureClips"]

log = logging.getLogger(__name__)


class FeatureClips(ClipDataset):
    """The clips of ``source``, read from features encoded once.

    Args:
        source: a clip dataset (``DavisClips``/``VideoClips``); its clip positions are reused.
        encoder: the frozen encoder.
        rule: the resize rule frames are encoded at.
        batch_size: frames per encoder pass.
    """

    def __init__(self, source: ClipDataset, encoder: FrozenEncoder, rule: ResizeRule, batch_size: int) -> None:
        self.frames: list[Tensor] = []
        self.features: list[Tensor] = []
        self.cls_attention: list[Tensor] = []
        t0, count = time.perf_counter(), 0
        lengths = list(source.lengths)
        with Progress(transient=True) as progress:
            task = progress.add_task("encoding clips once", total=len(source.lengths))
            for video in range(len(source.lengths)):
                progress.advance(task)
                try:
                    frames = None if video in source.bad else source.video_frames(video)
                except UnreadableFileError as error:
                    if not source.skip_bad:
                        raise
                    source.mark_bad(Skip(video, str(error.path), str(error)))
                    frames = None
                if frames is None:  # skipped: never sliced
                    self.frames.append(torch.empty(0, dtype=torch.uint8))
                    self.features.append(torch.empty(0))
                    self.cls_attention.append(torch.empty(0))
                    continue
                self.frames.append(frames)
                lengths[video] = len(frames)
                encoded = encoder.encode(frames, rule, batch_size)
                self.features.append(encoded.features.half().cpu())
                attention = encoded.cls_attention
                self.cls_attention.append(torch.empty(0) if attention is None else attention.half().cpu())
                count += len(frames)
        log.info("encoded %d frames once in %.1f s", count, time.perf_counter() - t0)
        self.has_cls_attention = encoder.num_heads is not None
        super().__init__(lengths, source.frames_per_clip, source.stride, source.clips_per_video, source.seed)
        self.adopt_skips(source)

    def _clip(self, video: int, start: int) -> dict[str, Tensor]:
        """``frames`` ``(T, 3, H, W)`` uint8, ``features`` ``(T, D, h, w)`` float32 and, when the encoder has
        it, ``cls_attention`` ``(T, heads, h, w)`` float32.
        """
        picks = slice(start, start + (self.frames_per_clip - 1) * self.stride + 1, self.stride)
        item = {"frames": self.frames[video][picks], "features": self.features[video][picks].float()}
        if self.has_cls_attention:
            item["cls_attention"] = self.cls_attention[video][picks].float()
        return item
