"""Training clips whose features are held in memory once encoded (``features.in_memory=true``).

A frozen encoder gives the same features for a frame every time it is drawn, so small datasets (the
synthetic set, DAVIS) are encoded once and later draws of a frame read its features from memory, which
takes training off the encoder's critical path. Nothing is encoded up front: a frame is encoded the first
time a batch draws it, so training starts at once (the first epoch runs at the speed of online encoding,
later ones at the speed of memory) and an interruption loses no encoding that a saved step did not use.

Each frame is encoded on its own (a batch of one), so its features do not depend on which clip drew it
first: a resumed run, or another order of clips, reads the same features bit for bit. Features, and the
CLS attention of encoders that have one, are kept as fp16 on the CPU.

Clips are read where the data loader reads them (its workers, or the main process): an item is the raw clip
and the positions of its frames. The main process turns a collated batch into features with
:meth:`FeatureClips.prepare`, on the encoder's device, so workers never run the encoder. An unreadable
video is skipped like any raw clip's (:class:`~dinosavi.data.videos.ClipDataset`).

Shapes: ``B`` clips, ``T`` frames, ``D`` channels, ``heads`` CLS attention heads, ``h, w`` feature grid,
``H, W`` pixels.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from dinosavi.data.videos import ClipDataset
from dinosavi.encoders.base import FrozenEncoder, ResizeRule

__all__ = ["FeatureClips"]

log = logging.getLogger(__name__)


class FeatureClips(ClipDataset):
    """The clips of ``source``, their features encoded when first drawn and then read from memory.

    Args:
        source: a clip dataset (``DavisClips``/``VideoClips``/``FrameClips``); its clip positions and its
            record of unreadable videos are reused.
        encoder: the frozen encoder.
        rule: the resize rule frames are encoded at.
    """

    def __init__(self, source: ClipDataset, encoder: FrozenEncoder, rule: ResizeRule) -> None:
        super().__init__(list(source.lengths), source.frames_per_clip, source.stride, source.clips_per_video,
                         source.seed)
        self.adopt_skips(source)
        self.source, self.encoder, self.rule = source, encoder, rule
        self.has_cls_attention = encoder.num_heads is not None
        self.features: dict[tuple[int, int], Tensor] = {}  # (video, frame) -> (D, h, w) fp16
        self.cls_attention: dict[tuple[int, int], Tensor] = {}  # (video, frame) -> (heads, h, w) fp16
        log.info("features.in_memory: each of the %d training frames is encoded when a batch first draws it, "
                 "then read from memory", sum(self.lengths))

    def _clip(self, video: int, start: int) -> dict[str, Tensor | int]:
        """``frames`` ``(T, 3, H, W)`` uint8 (the raw clip), ``video`` and ``index`` ``(T,)``: the positions of
        its frames in the video; raises ``UnreadableFileError``."""
        frames = self.source._clip(video, start)
        return {"frames": frames, "video": video, "index": torch.tensor(self.frame_indices(start))}

    def prepare(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """A collated batch with its features: ``frames`` ``(B, T, 3, H, W)`` uint8, ``features``
        ``(B, T, D, h, w)`` float32 and, when the encoder has it, ``cls_attention`` ``(B, T, heads, h, w)``;
        the frames no earlier batch drew are encoded now (one at a time) and kept."""
        frames, videos, index = batch["frames"], batch["video"].tolist(), batch["index"].tolist()
        keys = [[(video, t) for t in row] for video, row in zip(videos, index)]
        missing: dict[tuple[int, int], Tensor] = {}
        for b, row in enumerate(keys):
            for t, key in enumerate(row):
                if key not in self.features and key not in missing:
                    missing[key] = frames[b, t]
        if missing:
            encoded = self.encoder.encode(torch.stack(list(missing.values())), self.rule, batch_size=1)
            for i, key in enumerate(missing):
                self.features[key] = encoded.features[i].half().cpu()
                if encoded.cls_attention is not None:
                    self.cls_attention[key] = encoded.cls_attention[i].half().cpu()
        out = {"frames": frames,
               "features": torch.stack([torch.stack([self.features[k] for k in row]) for row in keys]).float()}
        if self.has_cls_attention:
            out["cls_attention"] = torch.stack([torch.stack([self.cls_attention[k] for k in row])
                                                for row in keys]).float()
        return out
