"""Config schemas: dataclasses registered in Hydra's ConfigStore, so every key and type is checked.

The YAML in ``dinosavi/conf`` fills these in: ``data/`` and ``encoder/`` are config groups of their own
sections; ``hparam/`` presets are complete recipes placed at the top level (they set ``model``,
``train`` and clip settings of ``data``). Values derived from others (the data split of a mode, the
feature dimension of an encoder) are computed in Python and logged, never interpolated.

The sections that a module takes as a whole are that module's own option dataclasses, so each value has
one source: ``train`` is :class:`dinosavi.training.options.TrainOptions`, ``eval`` and ``score`` are
:class:`dinosavi.evaluation.options.EvalOptions` and ``ScoreOptions``, ``propagate`` extends
``PropagationParams``, ``data.synthetic`` is :class:`dinosavi.data.synthetic.SyntheticSpec`. The front door
(:mod:`dinosavi.cli.modes`, :mod:`dinosavi.cli.build`) turns them into those objects; nothing below it reads a config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, DictConfig, OmegaConf

from dinosavi.data.badfiles import MAX_BAD_FRACTION
from dinosavi.data.synthetic import SyntheticSpec
from dinosavi.evaluation.options import EvalOptions, PropagationParams, ScoreOptions
from dinosavi.models.options import ModelConfig
from dinosavi.training.options import TrainOptions

__all__ = [
    "GROUPS_OVER_CHECKPOINT",
    "MODES",
    "OPTIONAL_SECTIONS",
    "Config",
    "DataConfig",
    "DemoConfig",
    "EncoderConfig",
    "ExportConfig",
    "FeaturesConfig",
    "Mode",
    "PropagateConfig",
    "SegmentConfig",
    "checkpoint_config",
    "register_configs",
    "resolve_split",
    "with_data",
]

log = logging.getLogger(__name__)

_CONF = Path(__file__).parent.parent / "conf"

@dataclass(frozen=True)
class Mode:
    """One mode of the CLI.

    Attributes:
        help: its line in ``mode=help``.
        run: ``module:function`` that runs it with ``(cfg, run_dir, overrides)``, imported only when the mode
            runs (None: ``mode=help``, which runs before Hydra makes a run directory).
        torch: whether it uses torch (``mode=score`` and ``mode=help`` import none, so nothing seeds it).
    """

    help: str
    run: str | None
    torch: bool = True


# The modes, once: the CLI's help, dispatch (:func:`dinosavi.cli.dispatch.run_mode`) and seeding read this
# table; ``conf/mode/<name>.yaml`` holds each one's defaults (a test keeps the two equal).
MODES: dict[str, Mode] = {
    "help": Mode("list modes, presets and the main options", None, torch=False),
    "demo": Mode("train the demo recipe (SAVi predictor) on synthetic video and on natural frames, evaluate on both",
                 "dinosavi.cli.demo:run_demo"),
    "train": Mode("train a slot model on video clips (data=davis|synthetic|videos|movi|ytvis)",
                  "dinosavi.cli.modes:run_train"),
    "eval": Mode("evaluate a checkpoint (resume=<ckpt>): lock-on J&F, or eval.lock_on=false for unsupervised discovery",
                 "dinosavi.cli.modes:run_eval"),
    "convert": Mode("an original DINOSAVi checkpoint (resume=<file>.ckpt) as a safetensors checkpoint (out=<file>)",
                    "dinosavi.cli.modes:run_convert"),
    "cache": Mode("encode a dataset once into the feature store (features.store=<dir>) at the train/eval resolutions",
                  "dinosavi.cli.modes:run_cache"),
    "propagate": Mode("label propagation of the first-frame masks with frozen features (DINO/CRW baseline), J&F",
                      "dinosavi.cli.modes:run_propagate"),
    "score": Mode("score a DAVIS-format results folder (results=<dir>) against data.root: official CSVs + JSON",
                  "dinosavi.cli.modes:run_score", torch=False),
    "segment": Mode("segment your own video (input=<file or folder>) with resume=<ckpt> [first_mask=<png>] or "
                    "method=propagate first_mask=<png>: PNGs, overlays, MP4, report.html",
                    "dinosavi.cli.modes:run_segment"),
    "export": Mode("a checkpoint (resume=<ckpt>) as a shareable model folder (out=<dir>): config.json, "
                   "model.safetensors, README.md; export.push=true export.repo=<owner/name> uploads it",
                   "dinosavi.cli.modes:run_export"),
}


@dataclass
class DataConfig:
    """Where clips and sequences come from.

    ``split`` None means the mode's default: ``train`` for training, ``val`` for evaluation.
    ``frame_rate`` resamples video files (``data=videos``); None keeps every frame.
    ``max_bad_fraction``: training skips videos with unreadable files and stops with an error only when
    their share passes this (see :mod:`dinosavi.data.badfiles`); evaluation is always strict.
    ``heldout_videos`` (``data=ytvis``): the last videos of YouTube-VIS ``train/`` that form the ``val`` split
    (VideoSAUR's and SlotContrast's 300; see :mod:`dinosavi.data.ytvis`).
    ``sequences`` (None: all), ``start`` and ``stop`` (exclusive; None: to the end) select what evaluation,
    label propagation and scoring read of the split: some sequences, and a frame range of each whose first
    frame is the one lock-on and propagation start from (:mod:`dinosavi.data.subset`).
    """

    name: str = MISSING
    root: str = MISSING
    split: str | None = None
    year: str = "2017"
    quality: str = "480p"
    batch_size: int = 8
    num_workers: int = 0
    frames_per_clip: int = 2
    stride: int = 1
    clips_per_video: int = 4
    frame_rate: float | None = None
    max_bad_fraction: float = MAX_BAD_FRACTION
    heldout_videos: int = 300
    sequences: list[str] | None = None
    start: int = 0
    stop: int | None = None
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)


@dataclass
class EncoderConfig:
    """A frozen backbone: a group option (``encoder=dino_vits8``) or any ``encoder.name=timm:<model>`` /
    ``hf:<repo id or dir>``. ``weights`` is a local file or folder (no network access then).
    ``stride`` applies to CNN encoders (8 or 16); ViTs have their patch size. ``precision`` is the
    autocast of ViTs on CUDA (``fp32``, ``bf16``, ``fp16``).
    """

    name: str = MISSING
    weights: str | None = None
    stride: int = 8
    batch_size: int = 32
    precision: str = "fp32"


@dataclass
class FeaturesConfig:
    """Where training and evaluation read features: computed online (default), encoded once into memory,
    or from the on-disk feature store at ``store`` (filled by ``mode=cache``; missing entries are encoded
    and written back).

    ``dtype`` (``fp16``/``fp32``) is the store's tensor type; ``resolutions`` what ``mode=cache`` stores:
    ``train`` (``train.input_size``) and/or ``eval`` (``eval.short_side``, long side a multiple of the stride).
    """

    in_memory: bool = False
    store: str | None = None
    dtype: str = "fp16"
    resolutions: list[str] = field(default_factory=lambda: ["train", "eval"])


@dataclass
class PropagateConfig(PropagationParams):
    """Label propagation (``mode=propagate``): :class:`dinosavi.evaluation.options.PropagationParams`
    (DINO's settings by default; ``propagate=crw`` sets CRW's), named by ``preset``, with the resize rule
    of its frames: the short side to ``short_side``, the long side to a multiple of ``multiple_of``.
    The outputs follow ``eval.overlays``, ``eval.videos`` and ``eval.report``.
    """

    preset: str = MISSING
    short_side: int = MISSING
    multiple_of: int = MISSING


@dataclass
class SegmentConfig:
    """``mode=segment``: how the frames of ``input=`` are read (see :mod:`dinosavi.data.inputs`).

    ``max_fps`` caps the frame rate (a faster video is resampled to it; null keeps every frame);
    ``short_side`` resizes the frames, and so the outputs, to this short side (null: the source's size;
    the encoder still sees ``eval.short_side`` or ``propagate.short_side``); ``start``/``stop`` are the
    frame range, counted after the cap (``stop`` exclusive, null: to the end); ``folder_fps`` is the
    rate of a folder of frames; ``chunk_frames`` frames are decoded and encoded at once (memory grows
    with it and with the frame size, never with the video's length). ``first_mask_frame``: the frame
    (counted as ``start``) that ``first_mask`` annotates; segmenting starts there. Unset, the mask is the
    first frame's, and ``start`` must be 0 (:func:`dinosavi.evaluation.segment.first_frame`).
    """

    max_fps: float | None = None
    short_side: int | None = None
    start: int = 0
    stop: int | None = None
    folder_fps: float = 24.0
    chunk_frames: int = 8
    first_mask_frame: int | None = None


@dataclass
class ExportConfig:
    """``mode=export``: the model of ``resume=`` as a Hub-style folder (:mod:`dinosavi.training.hub`) at ``out=``.

    ``results``: evaluation results (JSON files, or evaluation run directories) whose numbers the model card
    states; a training run's last checkpoint also brings the results written under its run directory.
    ``push``: upload the folder to the Hub repository ``repo`` (``owner/name``, created when missing,
    ``private`` when set) at ``revision`` (a branch; the default branch when null).
    """

    results: list[str] = field(default_factory=list)
    push: bool = False
    repo: str | None = None
    revision: str | None = None
    private: bool | None = None


@dataclass
class DemoConfig:
    """What ``mode=demo`` does besides the synthetic model: a natural-video model of the same recipe trained
    ``natural_steps`` steps on the frames of ``natural_root`` (DAVIS layout, its ``train`` split; the masks
    are never read) at ``natural_input_size``, ``natural_clips_per_video`` clips per video and epoch; it is
    evaluated on the DAVIS sample at ``davis_root``, its frames resized to ``davis_short_side`` (the
    synthetic set uses ``eval.short_side``). Lock-on is also scored fused with label propagation, with
    weight ``fuse`` on propagation's soft labels (``eval.fuse``).
    """

    davis_root: str = "../shared/data/davis-sample"
    davis_short_side: int = 320
    natural_root: str = "../shared/data/davis2016-train"
    natural_steps: int = 800
    natural_input_size: list[int] = field(default_factory=lambda: [160, 288])
    natural_clips_per_video: int = 16
    fuse: float = 0.7


@dataclass
class Config:
    """The whole configuration; ``preset`` names the hparam recipe that filled ``model``/``train``.

    ``input``, ``first_mask`` and ``method`` (``slots`` or ``propagate``) are ``mode=segment``'s.
    """

    mode: str = "help"
    preset: str = MISSING
    exp_name: str = "default"
    seed: int = 0
    device: str = "auto"
    resume: str | None = None
    results: str | None = None
    input: str | None = None
    first_mask: str | None = None
    method: str = "slots"
    out: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainOptions = field(default_factory=TrainOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)
    propagate: PropagateConfig = field(default_factory=PropagateConfig)
    score: ScoreOptions = field(default_factory=ScoreOptions)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


def register_configs() -> None:
    """Register the schema so ``main.yaml`` can name it in its defaults list."""
    ConfigStore.instance().store(name="config_schema", node=Config)


def _overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``(key or group, value)`` of each command-line override (``hydra.*`` left out)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [(o.key_or_group, o.value()) for o in parsed if not o.key_or_group.startswith("hydra")]


# groups whose options set only keys of their own section: their choice on the command line applies over a
# checkpoint's section (``mode=eval resume=... eval=original``), where other groups' choices are ignored
GROUPS_OVER_CHECKPOINT = ("eval",)
# sections a checkpoint may lack (saved from Python with a partial config): the command line's are kept
OPTIONAL_SECTIONS = ("eval",)


def checkpoint_config(
    cfg: DictConfig, ckpt_config: dict[str, Any], sections: list[str], overrides: list[str],
    path: str | None = None,
) -> DictConfig:
    """``cfg`` with ``sections`` taken from a checkpoint's config, command-line settings re-applied.

    Keys the user set on the command line keep the user's value, so ``resume=... train.max_steps=N``
    extends a run, ``encoder.weights=<path>`` points a checkpoint at local weights and ``eval.short_side=320``
    overrides the recipe's evaluation size. A config-group choice (``data=davis``, ``hparam=...``) would
    replace a whole section with its defaults, so for the checkpoint's sections it is ignored with a
    warning: set the keys instead. The choices of :data:`GROUPS_OVER_CHECKPOINT` are the exception: their
    options set only their own keys (``eval=original``: the original's protocol), which apply over the
    checkpoint's section, before the keys set on the command line.

    Args:
        cfg: the composed config of the command line.
        ckpt_config: the config stored in the checkpoint.
        sections: the sections to take from it (``preset``, ``model``, ``encoder``, ``eval``, ...); one of
            :data:`OPTIONAL_SECTIONS` it lacks stays the command line's.
        overrides: the command line's overrides.
        path: the checkpoint's file, named in errors.

    Raises:
        ValueError: the checkpoint's config lacks a section (it was saved without ``config=``), naming the file.
    """
    merged = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(merged, dict)
    for section in sections:
        if section not in ckpt_config:
            if section in OPTIONAL_SECTIONS:
                continue
            raise ValueError(
                f"{path or 'the checkpoint'} holds no `{section}` section in its config, so the model cannot be "
                f"rebuilt from it: it was saved without its config (train(..., config=...) and "
                f"save_checkpoint(path, model, config) store it; mode=train always does)")
        merged[section] = ckpt_config[section]
    out = OmegaConf.merge(OmegaConf.structured(Config), merged)
    chosen = _overrides(overrides)
    for key, value in chosen:
        if key in GROUPS_OVER_CHECKPOINT and key in sections and isinstance(value, str):
            OmegaConf.update(out, key, OmegaConf.load(_CONF / key / f"{value}.yaml"), merge=True)
    for key, _ in chosen:
        if key.split(".")[0] not in sections or key in GROUPS_OVER_CHECKPOINT:
            continue
        value = OmegaConf.select(cfg, key)
        if isinstance(value, DictConfig) or key == "hparam":
            log.warning("`%s` is a config group; the checkpoint's `%s` section is kept (set its keys instead)",
                        key, key)
            continue
        OmegaConf.update(out, key, value, merge=False)
    assert isinstance(out, DictConfig)
    return out


def with_data(ckpt_config: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """A converted original checkpoint's config holds only the clip settings of ``data``; the dataset itself
    (``data.name``, ``data.root``, ...) is the command line's."""
    if "data" not in ckpt_config or "name" in ckpt_config["data"]:
        return ckpt_config
    data = OmegaConf.to_container(cfg.data, resolve=False)
    assert isinstance(data, dict)
    return {**ckpt_config, "data": {**data, **ckpt_config["data"]}}


def resolve_split(cfg: DataConfig, mode: str) -> str:
    """The split a mode reads: ``data.split`` when set, else ``train`` for training and ``val`` otherwise."""
    if cfg.split is not None:
        return cfg.split
    return "train" if mode == "train" else "val"
