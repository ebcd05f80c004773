"""The one place where configs become objects: devices, encoders, models and datasets.

Modules elsewhere take plain typed arguments; these functions read the config sections.
"""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from dinosavi.config import DataConfig, EncoderConfig, ModelConfig
from dinosavi.data.videos import ClipIndex
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.features.memory import FeatureClips
from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.dinosaur import Dinosaur
from dinosavi.models.pos_embed import PositionalEncoding

__all__ = [
    "DATASETS",
    "build_clip_dataset",
    "build_encoder",
    "build_model",
    "build_train_dataset",
    "ensure_dataset",
    "resolve_device",
    "resolve_split",
]

log = logging.getLogger(__name__)

DATASETS = ("davis", "synthetic", "videos")


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (an error without a GPU) or ``auto`` (CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"Unknown device `{name}`; expected cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} was asked for, but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(name)


def resolve_split(cfg: DataConfig, mode: str) -> str:
    """The split a mode reads: ``data.split`` when set, else ``train`` for training and ``val`` otherwise."""
    if cfg.split is not None:
        return cfg.split
    return "train" if mode == "train" else "val"


def build_encoder(cfg: EncoderConfig) -> FrozenEncoder:
    """The frozen encoder named by ``encoder.name``."""
    from dinosavi.encoders.registry import build_encoder as _build

    return _build(cfg.name, weights=cfg.weights, stride=cfg.stride).freeze()


def build_model(cfg: ModelConfig, feature_dim: int) -> Dinosaur:
    """The slot model for features of ``feature_dim`` channels."""
    num_slots = cfg.num_slots if isinstance(cfg.num_slots, int) else tuple(int(n) for n in cfg.num_slots)
    pos_embed = PositionalEncoding(cfg.pe_type, cfg.pe_dim, (cfg.pe_size[0], cfg.pe_size[1]))
    decoder = AlphaDecoder(
        cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_kernel_size, cfg.decoder_hidden_dim, pos_embed
    )
    return Dinosaur(feature_dim, cfg.slot_dim, cfg.hidden_dim, num_slots, cfg.num_iters, decoder)


def ensure_dataset(cfg: DataConfig) -> None:
    """Generate the synthetic set at ``data.root`` when it is absent; check the name otherwise."""
    if cfg.name not in DATASETS:
        raise ValueError(f"Unknown dataset `{cfg.name}`; expected one of {DATASETS}")
    if cfg.name == "synthetic":
        from dinosavi.data.synthetic import SyntheticSpec, ensure_synthetic

        s = cfg.synthetic
        spec = SyntheticSpec(
            num_videos=s.num_videos, num_frames=s.num_frames, height=s.height, width=s.width,
            val_videos=s.val_videos, seed=s.seed,
        )
        ensure_synthetic(cfg.root, spec)


def build_train_dataset(cfg: DictConfig, split: str, encoder: FrozenEncoder, rule: ResizeRule) -> ClipIndex:
    """What training iterates over: raw clips ``(T, 3, H, W)`` uint8 (encoded online by the trainer), or
    dicts of ``frames`` and precomputed ``features`` when ``features.in_memory`` is set.
    """
    size = (int(cfg.train.input_size[0]), int(cfg.train.input_size[1]))
    clips = build_clip_dataset(cfg.data, split, size, cfg.seed)
    if cfg.features.in_memory:
        return FeatureClips(clips, encoder, rule, cfg.encoder.batch_size)
    return clips


def build_clip_dataset(cfg: DataConfig, split: str, size: tuple[int, int], seed: int) -> ClipIndex:
    """Training clips ``(T, 3, H, W)`` uint8 from ``data.name``; ``set_epoch(e)`` draws new clips."""
    ensure_dataset(cfg)
    if cfg.name == "videos":
        from dinosavi.data.videos import VideoClips

        return VideoClips(
            cfg.root, frames_per_clip=cfg.frames_per_clip, frame_rate=cfg.frame_rate,
            clips_per_video=cfg.clips_per_video, size=size, seed=seed,
        )
    from dinosavi.data.videos import DavisClips

    return DavisClips(
        cfg.root, split, frames_per_clip=cfg.frames_per_clip, stride=cfg.stride,
        clips_per_video=cfg.clips_per_video, size=size, seed=seed, year=cfg.year, quality=cfg.quality,
    )
