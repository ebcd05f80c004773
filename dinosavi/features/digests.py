"""What identifies a feature-store entry: digests of the source (file bytes, never decoded pixels, never
an mtime) and the fingerprint of the encoder (architecture, weights, preprocessing).

These digests are the feature store's keys (:class:`~dinosavi.features.space.FeatureSpace`): changing
what goes into one makes every stored entry a miss.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from dinosavi.encoders.base import FrozenEncoder

__all__ = ["encoder_fingerprint", "file_digest", "json_digest", "video_frame_digest", "weights_digest"]

_CHUNK = 1 << 20


def json_digest(obj: object) -> str:
    """sha256 of ``obj`` as JSON with sorted keys (the same object always gives the same digest)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (the identity of a source frame or video; mtime plays no part)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def video_frame_digest(file_hash: str, frame_rate: float | None, index: int) -> str:
    """The identity of frame ``index`` of a video whose bytes hash to ``file_hash``, decoded at ``frame_rate``."""
    return json_digest({"video": file_hash, "frame_rate": frame_rate, "index": index})


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's ``state_dict``: each key, dtype, shape and tensor bytes, in key order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def encoder_fingerprint(encoder: FrozenEncoder) -> dict[str, object]:
    """What identifies an encoder's output: architecture, weights and preprocessing."""
    return {
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "architecture": hashlib.sha256(repr(encoder).encode()).hexdigest(),
        "feature_dim": encoder.feature_dim,
        "patch_size": encoder.patch_size,
        "num_heads": encoder.num_heads,
        "precision": getattr(encoder, "precision", "fp32"),
        "weights": weights_digest(encoder),
        "preprocess": asdict(encoder.preprocess),
    }
