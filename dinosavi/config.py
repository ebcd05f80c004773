"""Config schemas: dataclasses registered in Hydra's ConfigStore, so every key and type is checked.

The YAML in ``dinosavi/conf`` fills these in: ``data/`` and ``encoder/`` are config groups of their own
sections; ``hparam/`` presets are complete recipes placed at the top level (they set ``model``,
``train`` and clip settings of ``data``). Values derived from others (the data split of a mode, the
feature dimension of an encoder) are computed in Python and logged, never interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

__all__ = [
    "MODES",
    "Config",
    "DataConfig",
    "DemoConfig",
    "EncoderConfig",
    "EvalConfig",
    "FeaturesConfig",
    "ModelConfig",
    "SyntheticConfig",
    "TrainConfig",
    "register_configs",
]

MODES = {
    "help": "list modes, presets and the main options",
    "demo": "make the synthetic set, train DINOSAUR on it, evaluate on it and on the DAVIS sample",
    "train": "train a slot model on video clips (data=davis|synthetic|videos)",
    "eval": "semi-supervised DAVIS evaluation of a checkpoint (resume=<checkpoint>) with J&F",
}


@dataclass
class SyntheticConfig:
    """The synthetic multi-object video set (``data=synthetic``), generated at ``data.root`` if absent."""

    num_videos: int = 20
    num_frames: int = 24
    height: int = 192
    width: int = 256
    val_videos: int = 4
    seed: int = 0


@dataclass
class DataConfig:
    """Where clips and sequences come from.

    ``split`` None means the mode's default: ``train`` for training, ``val`` for evaluation.
    ``frame_rate`` resamples video files (``data=videos``); None keeps every frame.
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
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class EncoderConfig:
    """A frozen backbone. ``stride`` applies to CNN encoders (8 or 16); ViTs have their patch size."""

    name: str = MISSING
    weights: str | None = None
    stride: int = 8
    batch_size: int = 32


@dataclass
class FeaturesConfig:
    """Where training reads features: computed online (default) or encoded once into memory."""

    in_memory: bool = False


@dataclass
class ModelConfig:
    """The slot model. ``num_slots`` is an int, or ``[bg, fg]`` with background/foreground groups."""

    num_slots: Any = 10
    slot_dim: int = 256
    hidden_dim: int = 1024
    num_iters: int = 3
    decoder_depth: int = 4
    decoder_kernel_size: int = 1
    decoder_hidden_dim: int = 1024
    pe_type: str = "linear"
    pe_dim: int = 4
    pe_size: list[int] = field(default_factory=lambda: [28, 28])


@dataclass
class TrainConfig:
    """Optimisation: Adam with a OneCycle schedule over ``max_steps``, gradient clipping by norm."""

    lr: float = 4e-4
    weight_decay: float = 0.0
    pct_start: float = 0.05
    grad_clip: float = 1.0
    max_steps: int = 1000
    save_every: int = 500
    log_every: int = 50
    input_size: list[int] = field(default_factory=lambda: [224, 224])


@dataclass
class EvalConfig:
    """Semi-supervised evaluation: first-frame lock-on, slots carried frame to frame.

    ``short_side`` resizes frames (long side to a multiple of the encoder stride) before encoding.
    ``output`` picks the masks: ``alpha`` (decoder) or ``slot`` (slot-attention weights).
    ``num_iters``/``ini_iters`` None use the model's iterations.
    """

    short_side: int = 224
    num_bg_slots: int = 4
    slots_per_class: int = 1
    output: str = "alpha"
    num_iters: int | None = None
    ini_iters: int | None = None
    overlays: bool = True


@dataclass
class DemoConfig:
    """What ``mode=demo`` evaluates besides the synthetic val set."""

    davis_root: str = "../shared/data/davis-sample"


@dataclass
class Config:
    """The whole configuration; ``preset`` names the hparam recipe that filled ``model``/``train``."""

    mode: str = "help"
    preset: str = MISSING
    exp_name: str = "default"
    seed: int = 0
    device: str = "auto"
    resume: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


def register_configs() -> None:
    """Register the schema so ``main.yaml`` can name it in its defaults list."""
    ConfigStore.instance().store(name="config_schema", node=Config)
