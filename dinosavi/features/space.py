"""The features of one encoder at one resolution in the feature store: keys, lookup, online encoding and
write-back.

An entry is one frame encoded by one encoder at one resolution. Its key is a sha256 over

- the encoder: class, architecture (its module ``repr``), feature dim, stride, heads, precision, and a
  sha256 of its weights (``state_dict`` tensors' bytes in key order);
- the preprocessing that travels with the weights (mean, std, interpolation);
- the resolution: the :class:`~dinosavi.encoders.base.ResizeRule` and whether frames are first resized
  as uint8 (as training clips are);
- the source: a sha256 of the frame's file bytes (a DAVIS JPEG), or of the video file's bytes plus the
  frame rate and the frame index, never decoded pixels, never an mtime (see
  :mod:`dinosavi.features.digests`).

A space stores ``features`` ``(T, D, h, w)`` and, when the encoder has it, ``cls_attention``
``(T, heads, h, w)``, plus uint8 ``frames`` thumbnails ``(T, 3, H', W')`` for the training resolution,
as shards of a :class:`~dinosavi.features.store.FeatureStore`.

Shapes: ``T`` frames, ``D`` channels, ``h, w`` feature grid, ``H, W`` pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor

from dinosavi.data.resize import resize_frames
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.features.digests import encoder_fingerprint, json_digest
from dinosavi.features.store import FeatureStore

__all__ = ["RESOLUTIONS", "THUMBNAIL_SIDE", "FeatureSpace", "Resolution", "StoredFrames", "resolution"]

THUMBNAIL_SIDE = 64  # long side of the stored frame thumbnails (TensorBoard images only)
RESOLUTIONS = ("train", "eval")


@dataclass(frozen=True)
class Resolution:
    """How frames reach the encoder.

    Attributes:
        rule: the resize rule of :meth:`FrozenEncoder.encode`.
        presize: frames are first resized as uint8 to ``rule.size`` with
            :func:`~dinosavi.data.resize.resize_frames`, as training clips are; the store then also keeps
            frame thumbnails.
    """

    rule: ResizeRule
    presize: bool = False

    def __post_init__(self) -> None:
        if self.presize and self.rule.size is None:
            raise ValueError(f"Resolution.presize needs a fixed rule.size, got {self.rule}")


def resolution(name: str, input_size: tuple[int, int], short_side: int | None, multiple_of: int) -> Resolution:
    """The resolution ``name`` of a run, the one place the resolutions are defined (for training, evaluation,
    label propagation and ``mode=cache`` alike, so store entries written by one are found by the others).

    ``train`` resizes frames to ``input_size`` ``(H, W)`` as training clips are (uint8 first, so the store
    keeps thumbnails); ``eval`` resizes the short side to ``short_side`` (None: native size) and the long side
    to a multiple of ``multiple_of`` (the encoder's patch size; label propagation's own ``multiple_of``).

    Raises:
        ValueError: an unknown name.
    """
    if name == "train":
        return Resolution(ResizeRule(size=input_size), presize=True)
    if name == "eval":
        return Resolution(ResizeRule(short_side=short_side, multiple_of=multiple_of))
    raise ValueError(f"Unknown resolution `{name}`; expected one of {RESOLUTIONS}")


@dataclass
class StoredFrames:
    """Features of ``T`` frames.

    Attributes:
        features: ``(T, D, h, w)`` float32.
        cls_attention: ``(T, heads, h, w)`` float32, or None when the encoder has no CLS token.
        frames: ``(T, 3, H', W')`` uint8 thumbnails, or None (stored for presized resolutions only).
    """

    features: Tensor
    cls_attention: Tensor | None = None
    frames: Tensor | None = None


def _thumbnails(frames: Tensor) -> Tensor:
    """``(T, 3, H, W)`` uint8 -> ``(T, 3, H', W')`` with the long side at most ``THUMBNAIL_SIDE``."""
    H, W = frames.shape[-2:]
    scale = min(1.0, THUMBNAIL_SIDE / max(H, W))
    return resize_frames(frames, (max(1, round(H * scale)), max(1, round(W * scale)))).contiguous()


class FeatureSpace:
    """The entries of one encoder at one resolution: key derivation, lookup, online encoding, write-back.

    Args:
        store: the store.
        encoder: the frozen encoder (its weights are hashed once, here).
        resolution: how frames are resized before encoding.
        batch_size: frames per encoder pass.
    """

    def __init__(self, store: FeatureStore, encoder: FrozenEncoder, resolution: Resolution, batch_size: int = 32):
        self.store, self.encoder, self.resolution, self.batch_size = store, encoder, resolution, batch_size
        res = {"rule": asdict(resolution.rule), "presize": resolution.presize}
        self.id = json_digest({"encoder": encoder_fingerprint(encoder), "resolution": res})
        self.names = ("features", "cls_attention", "frames") if resolution.presize else ("features", "cls_attention")

    def keys(self, digests: Sequence[str]) -> list[str]:
        """The entry key of each source digest (see :func:`~dinosavi.features.digests.file_digest`,
        :func:`~dinosavi.features.digests.video_frame_digest`)."""
        return [hashlib.sha256(f"{self.id}|{d}".encode()).hexdigest() for d in digests]

    def read(self, digests: Sequence[str]) -> StoredFrames | None:
        """The stored frames of ``digests``, or None when one is missing or corrupt (logged)."""
        got = self.store.read(self.keys(digests), self.names)
        if got is None:
            return None
        return StoredFrames(got["features"], got.get("cls_attention"), got.get("frames"))

    def encode(self, frames: Tensor) -> StoredFrames:
        """Encode ``(T, 3, H, W)`` uint8 frames online at this resolution (float32 out)."""
        if self.resolution.presize:
            assert self.resolution.rule.size is not None
            frames = resize_frames(frames, self.resolution.rule.size)
        out = self.encoder.encode(frames, self.resolution.rule, self.batch_size)
        attention = None if out.cls_attention is None else out.cls_attention.cpu()
        thumbs = _thumbnails(frames.cpu()) if self.resolution.presize else None
        return StoredFrames(out.features.cpu(), attention, thumbs)

    def write(self, group: str, digests: Sequence[str], stored: StoredFrames) -> Path:
        """Write the frames of one group (sequence or video) as one shard."""
        tensors = {"features": stored.features}
        if stored.cls_attention is not None:
            tensors["cls_attention"] = stored.cls_attention
        if stored.frames is not None:
            tensors["frames"] = stored.frames
        return self.store.write(self.id, group, self.keys(digests), tensors)

    def get(self, group: str, digests: Sequence[str], decode: Callable[[], Tensor],
            write_back: bool = True) -> tuple[StoredFrames, bool]:
        """The frames of a group from the store, else encoded online from ``decode()`` (and written back).

        Returns:
            The frames (features float32; as stored, or as computed) and whether they were computed.
        """
        stored = self.read(digests)
        if stored is not None:
            return stored, False
        stored = self.encode(decode())
        if len(stored.features) != len(digests):
            raise ValueError(f"{group}: decoded {len(stored.features)} frames, expected {len(digests)}")
        if write_back:
            self.write(group, digests, stored)
        return stored, True
