"""Training clips read from the feature store: the dataset training iterates over when ``features.store`` is
set (:func:`dinosavi.features.source.training_clips`).

Shapes: ``T`` frames, ``D`` channels, ``h, w`` feature grid, ``H', W'`` thumbnail pixels.
"""

from __future__ import annotations

import logging

from torch import Tensor

from dinosavi.data.badfiles import Skip, UnreadableFileError
from dinosavi.data.videos import ClipDataset, FrameClips, VideoClips
from dinosavi.features.cache import SourceGroup, cache_features
from dinosavi.features.space import FeatureSpace

__all__ = ["StoreClips"]

log = logging.getLogger(__name__)


class StoreClips(ClipDataset):
    """The clips of ``source``, read from the feature store (missing frames are encoded and stored first,
    with a progress bar; the store's manifest is flushed also when that is interrupted, so the next run
    encodes only what is still missing).

    Items are dicts: ``frames`` ``(T, 3, H', W')`` uint8 thumbnails (for TensorBoard images),
    ``features`` ``(T, D, h, w)`` float32 and, when the encoder has it, ``cls_attention``
    ``(T, heads, h, w)``. Clip positions are those of ``source``.

    Args:
        source: ``FrameClips`` (DAVIS layout, MOVi) or ``VideoClips``.
        space: the store space of the training resolution (``Resolution(size, presize=True)``).
    """

    def __init__(self, source: FrameClips | VideoClips, space: FeatureSpace) -> None:
        if isinstance(source, FrameClips):
            self.groups = [SourceGroup(n, p) for n, p in zip(source.sequence_names, source.paths)]
        else:
            self.groups = [SourceGroup(str(v), [v], video=True, frame_rate=source.frame_rate) for v in source.videos]
        self.source, self.space = source, space
        readable = [v for v in range(len(self.groups)) if v not in source.bad]

        def unreadable(index: int, error: UnreadableFileError) -> None:
            source.mark_bad(Skip(readable[index], str(error.path), str(error)))

        stats = cache_features(space.store, [space], [self.groups[v] for v in readable],
                               on_unreadable=unreadable if source.skip_bad else None)
        log.info("feature store %s: %d training frames, %d encoded now, in %.1f s", space.store.root,
                 stats.frames, stats.encoded, stats.seconds)
        self.digests: list[list[str]] = [[] for _ in self.groups]  # none for skipped videos
        for video, digests in zip(readable, stats.digests):
            self.digests[video] = digests
        lengths = [len(d) if d else n for d, n in zip(self.digests, source.lengths)]
        super().__init__(lengths, source.frames_per_clip, source.stride, source.clips_per_video, source.seed)
        self.adopt_skips(source)

    def _clip(self, video: int, start: int) -> dict[str, Tensor]:
        rows = list(self.frame_indices(start))
        stored = self.space.read([self.digests[video][t] for t in rows])
        if stored is None:  # corrupted since it was verified (logged): encode online, do not write from here
            stored = self.space.encode(self.groups[video].decode()[rows])
        assert stored.frames is not None, "a presized space stores thumbnails"
        item = {"frames": stored.frames, "features": stored.features}
        if stored.cls_attention is not None:
            item["cls_attention"] = stored.cls_attention
        return item
