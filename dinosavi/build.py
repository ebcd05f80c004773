"""The one place where configs become objects: devices, encoders, models and datasets.

Modules elsewhere take plain typed arguments; these functions read the config sections.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from dinosavi.config import DataConfig, EncoderConfig, ModelConfig
from dinosavi.data.badfiles import BadFile
from dinosavi.data.davis import DavisDataset, SequenceDataset
from dinosavi.data.videos import ClipIndex
from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.features.memory import FeatureClips
from dinosavi.models.decoders import (
    DECODERS,
    AlphaDecoder,
    MixerDecoder,
    MLPDecoder,
    SlotDecoder,
    TransformerDecoder,
)
from dinosavi.models.pos_embed import OriginalPositionalEncoding, PositionalEncoding
from dinosavi.models.predictor import PREDICTORS, SaviPredictor, TimeDecoder
from dinosavi.models.slot_model import SlotModel

__all__ = [
    "DATASETS",
    "build_clip_dataset",
    "build_encoder",
    "build_model",
    "build_sequences",
    "build_train_dataset",
    "check_data_root",
    "ensure_dataset",
    "resolve_device",
    "resolve_split",
]

log = logging.getLogger(__name__)

DATASETS = ("davis", "synthetic", "videos", "movi")
_LAYOUTS = {
    "davis": "a DAVIS-layout folder with JPEGImages/, Annotations/ and ImageSets/",
    "synthetic": "a DAVIS-layout folder (train and eval generate the synthetic set there when absent)",
    "movi": "a MOVi export with [<split>/]rgb/<video>/ and [<split>/]seg/<video>/",
    "videos": "a folder of .mp4, .webm or .avi files",
}


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
    from dinosavi.encoders.registry import create_encoder as _build

    return _build(cfg.name, weights=cfg.weights, stride=cfg.stride, precision=cfg.precision).freeze()


def build_model(cfg: ModelConfig, feature_dim: int) -> SlotModel:
    """The slot model for features of ``feature_dim`` channels (DINOSAUR when ``predictor=none``)."""
    if cfg.decoder not in DECODERS:
        raise ValueError(f"Unknown model.decoder `{cfg.decoder}`; expected one of {DECODERS}")
    if cfg.predictor not in PREDICTORS:
        raise ValueError(f"Unknown model.predictor `{cfg.predictor}`; expected one of {PREDICTORS}")
    num_slots = cfg.num_slots if isinstance(cfg.num_slots, int) else tuple(int(n) for n in cfg.num_slots)
    pe_size = (int(cfg.pe_size[0]), int(cfg.pe_size[1]))
    decoder: SlotDecoder
    if cfg.decoder == "alpha":
        pe_class = OriginalPositionalEncoding if cfg.style == "original" else PositionalEncoding
        pos_embed = pe_class(cfg.pe_type, cfg.pe_dim, pe_size)
        decoder = AlphaDecoder(
            cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_kernel_size, cfg.decoder_hidden_dim, pos_embed
        )
    elif cfg.decoder == "mlp":
        decoder = MLPDecoder(cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_hidden_dim, pe_size)
    elif cfg.decoder == "mixer":
        decoder = MixerDecoder(cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_hidden_dim,
                               PositionalEncoding(cfg.pe_type, cfg.pe_dim, pe_size))
    else:
        decoder = TransformerDecoder(
            cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_hidden_dim, cfg.num_heads, pe_size
        )
    predictor: nn.Module | None = None
    if cfg.predictor == "savi":
        predictor = SaviPredictor(cfg.slot_dim, cfg.num_heads)
    elif cfg.predictor == "identity":
        predictor = nn.Identity()
    time_decoders = [TimeDecoder(cfg.time_decoder, cfg.slot_dim, cfg.num_heads) for _ in cfg.time_steps]
    return SlotModel(
        feature_dim, cfg.slot_dim, cfg.hidden_dim, num_slots, cfg.num_iters, decoder,
        ini_iters=cfg.ini_iters, predictor=predictor, time_steps=[int(k) for k in cfg.time_steps],
        time_decoders=time_decoders, bgfg_strategy=cfg.bgfg_strategy if cfg.bgfg else None, input_pe=cfg.input_pe,
        blend=cfg.blend, input_mlp=cfg.input_mlp, style=cfg.style, loss_norm=cfg.loss_norm,
    )


def check_data_root(cfg: DataConfig) -> None:
    """Check that ``data.name`` is known and ``data.root`` is a folder.

    Raises:
        ValueError: an unknown dataset name.
        FileNotFoundError: ``data.root`` is missing (names the key, the path and the expected layout).
    """
    if cfg.name not in DATASETS:
        raise ValueError(f"Unknown dataset `{cfg.name}`; expected one of {DATASETS}")
    if not Path(cfg.root).is_dir():
        raise FileNotFoundError(
            f"data.root={cfg.root} is not a folder (data={cfg.name}); expected {_LAYOUTS[cfg.name]}"
        )


def ensure_dataset(cfg: DataConfig) -> None:
    """Generate the synthetic set at ``data.root`` when it is absent; check the name and the root otherwise."""
    if cfg.name != "synthetic":
        check_data_root(cfg)
        return
    from dinosavi.data.synthetic import SyntheticSpec, ensure_synthetic

    s = cfg.synthetic
    spec = SyntheticSpec(
        num_videos=s.num_videos, num_frames=s.num_frames, height=s.height, width=s.width,
        val_videos=s.val_videos, seed=s.seed,
    )
    ensure_synthetic(cfg.root, spec)


def build_train_dataset(
    cfg: DictConfig, split: str, encoder: FrozenEncoder, rule: ResizeRule,
    known_bad: Mapping[str, BadFile] | None = None,
) -> ClipIndex:
    """What training iterates over: raw clips ``(T, 3, H, W)`` uint8 (encoded online by the trainer), or
    dicts of ``frames`` and precomputed ``features`` when ``features.store`` (read from the on-disk
    store, missing frames encoded and written first) or ``features.in_memory`` is set.

    Unreadable files are skipped (``skip_bad``, see :mod:`dinosavi.data.badfiles`); ``known_bad`` lists
    files (by path) to skip without reading them.
    """
    size = (int(cfg.train.input_size[0]), int(cfg.train.input_size[1]))
    clips = build_clip_dataset(cfg.data, split, size, cfg.seed, skip_bad=True, known_bad=known_bad)
    if cfg.features.store:
        from dinosavi.data.videos import FrameClips, VideoClips
        from dinosavi.features.cache import StoreClips
        from dinosavi.features.space import FeatureSpace, Resolution
        from dinosavi.features.store import FeatureStore

        if cfg.features.in_memory:
            log.info("features.store is set: training reads the store, features.in_memory is not used")
        assert isinstance(clips, FrameClips | VideoClips)
        store = FeatureStore(cfg.features.store, cfg.features.dtype)
        space = FeatureSpace(store, encoder, Resolution(rule, presize=True), cfg.encoder.batch_size)
        return StoreClips(clips, space)
    if cfg.features.in_memory:
        return FeatureClips(clips, encoder, rule, cfg.encoder.batch_size)
    return clips


def build_sequences(cfg: DataConfig, split: str) -> SequenceDataset:
    """Whole annotated sequences of ``split`` for evaluation: DAVIS layout (``davis``, ``synthetic``) or
    MOVi frame folders (``movi``)."""
    if cfg.name == "videos":
        raise ValueError("data=videos has no annotations to evaluate on; use data=davis, synthetic or movi")
    check_data_root(cfg)
    if cfg.name == "movi":
        from dinosavi.data.movi import MoviDataset

        return MoviDataset(cfg.root, split)
    return DavisDataset(cfg.root, split, year=cfg.year, quality=cfg.quality)


def build_clip_dataset(
    cfg: DataConfig, split: str, size: tuple[int, int], seed: int, skip_bad: bool = False,
    known_bad: Mapping[str, BadFile] | None = None,
) -> ClipIndex:
    """Training clips ``(T, 3, H, W)`` uint8 from ``data.name``; ``set_epoch(e)`` draws new clips.
    ``skip_bad`` and ``known_bad`` as in :class:`dinosavi.data.videos.FrameClips`."""
    ensure_dataset(cfg)
    if cfg.name == "videos":
        from dinosavi.data.videos import VideoClips

        return VideoClips(
            cfg.root, frames_per_clip=cfg.frames_per_clip, frame_rate=cfg.frame_rate,
            clips_per_video=cfg.clips_per_video, size=size, seed=seed, skip_bad=skip_bad, known_bad=known_bad,
        )
    if cfg.name == "movi":
        from dinosavi.data.movi import MoviDataset
        from dinosavi.data.videos import FrameClips

        return FrameClips(
            MoviDataset(cfg.root, split), frames_per_clip=cfg.frames_per_clip, stride=cfg.stride,
            clips_per_video=cfg.clips_per_video, size=size, seed=seed, root=cfg.root, skip_bad=skip_bad,
            known_bad=known_bad,
        )
    from dinosavi.data.videos import DavisClips

    return DavisClips(
        cfg.root, split, frames_per_clip=cfg.frames_per_clip, stride=cfg.stride,
        clips_per_video=cfg.clips_per_video, size=size, seed=seed, year=cfg.year, quality=cfg.quality,
        skip_bad=skip_bad, known_bad=known_bad,
    )
