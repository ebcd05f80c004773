"""Datasets: the DAVIS and MOVi readers, synthetic multi-object videos and clip sampling for training.

Names are imported on first use (PEP 562): reading palette PNGs and split files needs no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dinosavi.data.davis import DavisDataset, VideoSequence, read_frames, read_rgb
    from dinosavi.data.decode import decode_video, find_videos
    from dinosavi.data.movi import MoviDataset, read_id_png
    from dinosavi.data.png import davis_palette, read_palette_png, write_palette_png
    from dinosavi.data.synthetic import SyntheticSpec, ensure_synthetic, generate_synthetic, render_video
    from dinosavi.data.videos import DavisClips, VideoClips, clip_starts

__all__ = [
    "DavisClips",
    "DavisDataset",
    "MoviDataset",
    "SyntheticSpec",
    "VideoClips",
    "VideoSequence",
    "clip_starts",
    "davis_palette",
    "decode_video",
    "ensure_synthetic",
    "find_videos",
    "generate_synthetic",
    "read_frames",
    "read_id_png",
    "read_palette_png",
    "read_rgb",
    "render_video",
    "write_palette_png",
]

_MODULES = {
    "DavisClips": "videos",
    "DavisDataset": "davis",
    "MoviDataset": "movi",
    "SyntheticSpec": "synthetic",
    "VideoClips": "videos",
    "VideoSequence": "davis",
    "clip_starts": "videos",
    "davis_palette": "png",
    "decode_video": "decode",
    "ensure_synthetic": "synthetic",
    "find_videos": "decode",
    "generate_synthetic": "synthetic",
    "read_frames": "davis",
    "read_id_png": "movi",
    "read_palette_png": "png",
    "read_rgb": "davis",
    "render_video": "synthetic",
    "write_palette_png": "png",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
