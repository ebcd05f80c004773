"""The one place where config sections become objects: devices, encoders, models, feature sources and
datasets. Modules elsewhere take plain typed arguments; these functions read the config sections.

Datasets dispatch on ``data.name`` once, through :data:`DATASETS`: what its root holds, its annotated
sequences (evaluation), its training clips and its source groups (``mode=cache``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from dinosavi.cli.checks import DATASET_LAYOUTS
from dinosavi.cli.config import DataConfig, EncoderConfig, FeaturesConfig, resolve_split
from dinosavi.data.badfiles import BadFile
from dinosavi.data.davis import DavisDataset, SequenceDataset
from dinosavi.data.videos import ClipDataset
from dinosavi.encoders.base import FrozenEncoder
from dinosavi.features.cache import SourceGroup, davis_groups, movi_groups, video_groups
from dinosavi.features.source import FeatureSource
from dinosavi.features.space import Resolution, resolution
from dinosavi.features.store import FeatureStore
from dinosavi.models.factory import build_model
from dinosavi.models.keys import feature_width
from dinosavi.models.options import ModelConfig
from dinosavi.models.slot_model import SlotModel
from dinosavi.training.checkpoint import Checkpoint

__all__ = [
    "DATASETS",
    "build_clip_dataset",
    "build_encoder",
    "build_feature_source",
    "build_resolution",
    "build_sequences",
    "build_source_groups",
    "build_training_clips",
    "check_data_root",
    "check_feature_width",
    "check_model_encoder",
    "ensure_dataset",
    "input_size",
    "load_model",
    "resolve_device",
    "restore_model",
]

log = logging.getLogger(__name__)

def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (an error without a GPU) or ``auto`` (CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"Unknown device `{name}`; expected cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} was asked for, but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(name)


def build_encoder(cfg: EncoderConfig) -> FrozenEncoder:
    """The frozen encoder named by ``encoder.name``."""
    from dinosavi.encoders.registry import create_encoder as _build

    encoder = _build(cfg.name, weights=cfg.weights, stride=cfg.stride, precision=cfg.precision).freeze()
    encoder.name = cfg.name
    return encoder


def build_resolution(cfg: DictConfig, encoder: FrozenEncoder, name: str) -> Resolution:
    """The run's resolution ``name`` as :func:`dinosavi.features.space.resolution` defines it: ``train``
    (``train.input_size``), ``eval`` (``eval.short_side``, the long side a multiple of the encoder's patch size)
    or ``propagate`` (the eval rule at ``propagate.short_side`` and ``propagate.multiple_of``)."""
    if name == "propagate":
        return resolution("eval", input_size(cfg), cfg.propagate.short_side, cfg.propagate.multiple_of)
    return resolution(name, input_size(cfg), cfg.eval.short_side, encoder.patch_size)


def build_feature_source(cfg: DictConfig, encoder: FrozenEncoder, name: str) -> FeatureSource:
    """The features of frames at the run's resolution ``name`` (:func:`build_resolution`), read from
    ``features.store`` when set."""
    return FeatureSource.create(encoder, build_resolution(cfg, encoder, name), cfg.encoder.batch_size,
                                _store(cfg.features))


def input_size(cfg: DictConfig) -> tuple[int, int]:
    """``train.input_size`` as ``(H, W)``: the one place it is read."""
    return int(cfg.train.input_size[0]), int(cfg.train.input_size[1])


def build_training_clips(
    cfg: DictConfig, source: FeatureSource, known_bad: Mapping[str, BadFile] | None = None
) -> ClipDataset:
    """What training iterates over (:func:`dinosavi.features.source.training_clips`): the clips of the train
    split at ``train.input_size``, raw, from the store of ``source`` or, with ``features.in_memory``, encoded
    once. Unreadable files are skipped; ``known_bad`` lists files (by path) to skip without reading them."""
    from dinosavi.features.source import training_clips

    split = resolve_split(cfg.data, "train")
    clips = build_clip_dataset(cfg.data, split, input_size(cfg), cfg.seed, skip_bad=True, known_bad=known_bad)
    return training_clips(clips, source, cfg.features.in_memory)


def _store(cfg: FeaturesConfig) -> FeatureStore | None:
    return FeatureStore(cfg.store, cfg.dtype) if cfg.store else None


def load_model(ckpt: Checkpoint, cfg: ModelConfig, encoder: FrozenEncoder) -> SlotModel:
    """The model of a checkpoint (``cfg`` is its ``model`` section), on the encoder's device, weights
    loaded strictly, in eval mode.

    Raises:
        ValueError: the checkpoint takes features of another width than the encoder's
            (:func:`check_feature_width`).
    """
    check_feature_width(ckpt, encoder)
    return restore_model(ckpt, cfg, encoder.feature_dim).to(next(encoder.parameters()).device).eval()


def check_feature_width(ckpt: Checkpoint, encoder: FrozenEncoder) -> None:
    """Check that a checkpoint loaded for ``encoder`` (to evaluate, segment or resume training) takes features
    of the encoder's width, whatever wrote it: ``extra["feature_dim"]`` where the checkpoint records it (a
    converted original), else read off its weights (:func:`dinosavi.models.keys.feature_width`).

    Raises:
        ValueError: the widths differ; names the checkpoint, its preset, the encoder and both widths.
    """
    recorded = ckpt.extra.get("feature_dim")
    width = int(recorded) if recorded is not None else feature_width(ckpt.model)
    if width is None or width == encoder.feature_dim:
        return
    path = ckpt.path or ckpt.extra.get("path", "the checkpoint")
    trained = (ckpt.config.get("encoder") or {}).get("name")
    hint = f"encoder.name={trained} (the encoder it was trained with)" if trained else f"a {width}-d encoder.name"
    raise ValueError(f"{path} (preset `{ckpt.config.get('preset', 'unknown')}`) takes {width}-d features; encoder "
                     f"`{encoder.name}` gives {encoder.feature_dim}-d features: set {hint}")


def restore_model(ckpt: Checkpoint, cfg: ModelConfig, feature_dim: int) -> SlotModel:
    """The model of a checkpoint on ``feature_dim``-d features, its weights loaded strictly (every key, no
    more): the one place a checkpoint's weights become a model."""
    model = build_model(cfg, feature_dim)
    model.load_state_dict(ckpt.model, strict=True)
    return model


def check_model_encoder(cfg: ModelConfig, encoder: FrozenEncoder, preset: str) -> None:
    """Background/foreground slot groups read the encoder's CLS attention.

    Raises:
        ValueError: ``model.bgfg`` with an encoder that has no CLS token.
    """
    if cfg.bgfg and encoder.num_heads is None:
        raise ValueError(
            f"preset `{preset}` uses background/foreground slot groups (model.bgfg=true), which need the "
            f"encoder's CLS attention; encoder `{encoder.name}` has none: use a ViT encoder "
            f"(e.g. encoder=dino_vits8) or set model.bgfg=false"
        )


@dataclass(frozen=True)
class _Dataset:
    """What ``data.name`` means: the layout its root holds, its annotated sequences (None: it has no
    annotations), its training clips and its source groups for the feature store."""

    layout: str
    sequences: Callable[[DataConfig, str], SequenceDataset] | None
    clips: Callable[..., ClipDataset]
    groups: Callable[[DataConfig], list[SourceGroup]]


def _davis_sequences(cfg: DataConfig, split: str) -> SequenceDataset:
    return DavisDataset(cfg.root, split, year=cfg.year, quality=cfg.quality)


def _movi_sequences(cfg: DataConfig, split: str) -> SequenceDataset:
    from dinosavi.data.movi import MoviDataset

    return MoviDataset(cfg.root, split)


def _ytvis_sequences(cfg: DataConfig, split: str) -> SequenceDataset:
    from dinosavi.data.ytvis import YtvisDataset

    dataset = YtvisDataset(cfg.root, split, cfg.heldout_videos)
    if not dataset.has_masks:
        raise ValueError(f"YouTube-VIS split `{split}` ({dataset.json_path}) ships without masks (its official "
                         f"evaluation is a server), so it cannot be scored here; score data.split=val (the last "
                         f"data.heldout_videos={cfg.heldout_videos} videos of train/, VideoSAUR's and SlotContrast's "
                         f"split), or use `{split}` for training, mode=cache or mode=segment input=<its frame folder>")
    return dataset


def _ytvis_clips(cfg: DataConfig, split: str, **kwargs: object) -> ClipDataset:
    from dinosavi.data.videos import FrameClips
    from dinosavi.data.ytvis import YtvisDataset

    return FrameClips(YtvisDataset(cfg.root, split, cfg.heldout_videos, annotations=False),
                      frames_per_clip=cfg.frames_per_clip, stride=cfg.stride, clips_per_video=cfg.clips_per_video,
                      root=cfg.root, **kwargs)  # type: ignore[arg-type]


def _ytvis_groups(cfg: DataConfig) -> list[SourceGroup]:
    """The videos of ``data.split``, or of every official folder present (``train``, ``valid``, ``test``)."""
    from dinosavi.data.ytvis import YtvisDataset

    splits = [cfg.split] if cfg.split is not None else [s for s in ("train-all", "valid", "test")
                                                         if (Path(cfg.root) / s.removesuffix("-all")).is_dir()]
    groups: dict[str, SourceGroup] = {}
    for split in splits:
        dataset = YtvisDataset(cfg.root, split, cfg.heldout_videos, annotations=False)
        for name in dataset.sequence_names:
            groups.setdefault(f"{split}/{name}", SourceGroup(name, dataset.frame_paths(name)))
    return list(groups.values())


def _davis_clips(cfg: DataConfig, split: str, **kwargs: object) -> ClipDataset:
    from dinosavi.data.videos import DavisClips

    return DavisClips(cfg.root, split, frames_per_clip=cfg.frames_per_clip, stride=cfg.stride,
                      clips_per_video=cfg.clips_per_video, year=cfg.year, quality=cfg.quality, **kwargs)  # type: ignore[arg-type]


def _movi_clips(cfg: DataConfig, split: str, **kwargs: object) -> ClipDataset:
    from dinosavi.data.movi import MoviDataset
    from dinosavi.data.videos import FrameClips

    return FrameClips(MoviDataset(cfg.root, split), frames_per_clip=cfg.frames_per_clip, stride=cfg.stride,
                      clips_per_video=cfg.clips_per_video, root=cfg.root, **kwargs)  # type: ignore[arg-type]


def _video_clips(cfg: DataConfig, split: str, **kwargs: object) -> ClipDataset:
    from dinosavi.data.videos import VideoClips

    return VideoClips(cfg.root, frames_per_clip=cfg.frames_per_clip, frame_rate=cfg.frame_rate,
                      clips_per_video=cfg.clips_per_video, **kwargs)  # type: ignore[arg-type]


def _davis_groups(cfg: DataConfig) -> list[SourceGroup]:
    return davis_groups(cfg.root, None if cfg.split is None else [cfg.split], cfg.year, cfg.quality)


DATASETS: dict[str, _Dataset] = {  # the layouts (and names) are the front door's checks'
    "davis": _Dataset(DATASET_LAYOUTS["davis"], _davis_sequences, _davis_clips, _davis_groups),
    "synthetic": _Dataset(DATASET_LAYOUTS["synthetic"], _davis_sequences, _davis_clips, _davis_groups),
    "movi": _Dataset(DATASET_LAYOUTS["movi"], _movi_sequences, _movi_clips,
                     lambda cfg: movi_groups(cfg.root, cfg.split)),
    "videos": _Dataset(DATASET_LAYOUTS["videos"], None, _video_clips,
                       lambda cfg: video_groups(cfg.root, cfg.frame_rate)),
    "ytvis": _Dataset(DATASET_LAYOUTS["ytvis"], _ytvis_sequences, _ytvis_clips, _ytvis_groups),
}


def _dataset(cfg: DataConfig) -> _Dataset:
    if cfg.name not in DATASETS:
        raise ValueError(f"Unknown dataset `{cfg.name}`; expected one of {tuple(DATASETS)}")
    return DATASETS[cfg.name]


def check_data_root(cfg: DataConfig) -> None:
    """Check that ``data.name`` is known and ``data.root`` is a folder.

    Raises:
        ValueError: an unknown dataset name.
        FileNotFoundError: ``data.root`` is missing (names the key, the path and the expected layout).
    """
    kind = _dataset(cfg)
    if not Path(cfg.root).is_dir():
        raise FileNotFoundError(f"data.root={cfg.root} is not a folder (data={cfg.name}); expected {kind.layout}")


def ensure_dataset(cfg: DataConfig) -> None:
    """Generate the synthetic set at ``data.root`` when it is absent; check the name and the root otherwise."""
    if cfg.name != "synthetic":
        check_data_root(cfg)
        return
    from omegaconf import OmegaConf

    from dinosavi.data.synthetic import SyntheticSpec, ensure_synthetic

    spec = cfg.synthetic if isinstance(cfg.synthetic, SyntheticSpec) else OmegaConf.to_object(cfg.synthetic)
    assert isinstance(spec, SyntheticSpec)
    ensure_synthetic(cfg.root, spec)


def build_sequences(cfg: DataConfig, split: str) -> SequenceDataset:
    """Annotated sequences of ``split`` for evaluation: DAVIS layout (``davis``, ``synthetic``), MOVi frame
    folders (``movi``) or YouTube-VIS (``ytvis``; its ``valid``/``test`` splits have no masks: an error);
    only ``data.sequences`` when set, each cut to ``data.start``/``data.stop``.

    Raises:
        ValueError: ``data=videos``, which has no annotations.
    """
    kind = _dataset(cfg)
    if kind.sequences is None:
        raise ValueError(f"data={cfg.name} has no annotations to evaluate on; use data=davis, synthetic, movi or ytvis")
    check_data_root(cfg)
    dataset = kind.sequences(cfg, split)
    if cfg.sequences is None and cfg.start == 0 and cfg.stop is None:
        return dataset
    from dinosavi.data.subset import SequenceSubset

    names = None if cfg.sequences is None else [str(name) for name in cfg.sequences]
    return SequenceSubset(dataset, names, cfg.start, cfg.stop, where=f"split {split} of data.root={cfg.root}")


def build_clip_dataset(
    cfg: DataConfig, split: str, size: tuple[int, int], seed: int, skip_bad: bool = False,
    known_bad: Mapping[str, BadFile] | None = None,
) -> ClipDataset:
    """Training clips ``(T, 3, H, W)`` uint8 of ``size`` from ``data.name``; ``set_epoch(e)`` draws new clips.
    ``skip_bad`` and ``known_bad`` as in :class:`dinosavi.data.videos.FrameClips`."""
    ensure_dataset(cfg)
    return _dataset(cfg).clips(cfg, split, size=size, seed=seed, skip_bad=skip_bad, known_bad=known_bad)


def build_source_groups(cfg: DataConfig) -> list[SourceGroup]:
    """The source groups (sequences, video files) of ``data`` that ``mode=cache`` stores."""
    check_data_root(cfg)
    return _dataset(cfg).groups(cfg)
