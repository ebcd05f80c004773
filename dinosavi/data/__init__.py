"""Datasets: the DAVIS and MOVi readers, synthetic multi-object videos and clip sampling for training."""

from dinosavi.data.davis import (
    DavisDataset,
    Sequence,
    davis_palette,
    read_frames,
    read_palette_png,
    read_rgb,
    write_palette_png,
)
from dinosavi.data.movi import MoviDataset, read_id_png
from dinosavi.data.synthetic import SyntheticSpec, ensure_synthetic, generate_synthetic, render_video
from dinosavi.data.videos import DavisClips, VideoClips, clip_starts, decode_video, find_videos

__all__ = [
    "DavisClips",
    "DavisDataset",
    "MoviDataset",
    "Sequence",
    "SyntheticSpec",
    "VideoClips",
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
