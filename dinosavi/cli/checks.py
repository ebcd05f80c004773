"""Every user-facing value of a composed config, checked by its key before torch is imported.

Hydra checks keys and types against the schema (:mod:`dinosavi.cli.config`); :func:`check_config` checks the
values: names that must be one of a few (``device``, ``method``, ``data.name``, ``encoder.name``,
``eval.protocol``, the ``model.*`` choices), numbers that must be in range, and the files and folders a mode
reads (``data.root`` and its split, ``resume=`` (a checkpoint file, a model folder of ``mode=export`` or an
``hf://`` name), ``input=``, ``first_mask=``, ``results=``, ``export.results``, ``encoder.weights``). The entry
point runs it right after composing, so a mistake is one message naming the key or the file, in well
under a second, before any import of torch, any dataset generated or any weights fetched
(``python -m dinosavi`` prints it without a traceback and exits with status 2).

The sections that are option dataclasses (``train``, ``eval``, ``score``, ``propagate``,
``data.synthetic``) are checked by those dataclasses themselves, as the modes build them. The allowed
names of the lower parts (datasets, encoders, evaluation protocols, model choices, a model folder's files)
are listed here, where no torch is needed;
``tests/cli/test_checks.py`` keeps them equal to the parts' own lists.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from dinosavi.data.subset import check_range, select_names
from dinosavi.evaluation.options import METHODS, slot_count
from dinosavi.precision import PRECISIONS

__all__ = [
    "DATASET_LAYOUTS",
    "ENCODER_NAMES",
    "ENCODER_PREFIXES",
    "EVAL_PROTOCOLS",
    "MODEL_CHOICES",
    "MODEL_FOLDER_FILES",
    "MODEL_FOLDER_FORMAT",
    "ConfigError",
    "ConfigFileNotFoundError",
    "check_config",
]

DATASET_LAYOUTS = {
    "davis": "a DAVIS-layout folder with JPEGImages/, Annotations/ and ImageSets/",
    "synthetic": "a DAVIS-layout folder (train and eval generate the synthetic set there when absent)",
    "movi": "a MOVi export with [<split>/]rgb/<video>/ and [<split>/]seg/<video>/",
    "videos": "a folder of .mp4, .webm or .avi files",
    "ytvis": "a YouTube-VIS 2019/2021 folder with train/JPEGImages/ and train/instances.json (or train.json)",
}
ENCODER_NAMES = ("efficientnet_lite0", "vit_tiny_random", "dino_vits8", "dino_vits16", "dino_vitb8", "dino_vitb16",
                 "dinov2_vits14", "dinov2_vitb14")
ENCODER_PREFIXES = ("timm:", "random:", "hf:")
ENCODER_STRIDES = (8, 16)
# eval=<protocol>: ours, the original DINOSAVi's, and the anchors' scorings (dinosavi.evaluation.anchors)
EVAL_PROTOCOLS = ("dinosavi", "original", "videosaur", "slotcontrast")
MODEL_FOLDER_FILES = ("config.json", "model.safetensors")  # mode=export's folder (training.hub), that resume= reads
MODEL_FOLDER_FORMAT = "dinosavi-pretrained/1"  # the "format" of its config.json
HF_PREFIX = "hf://"
_HF_URI = re.compile(r"hf://[^/@]+/[^/@]+(@.+)?")  # hf://owner/name[@revision], as dinosavi.training.hub parses it
MODEL_CHOICES = {
    "decoder": ("alpha", "mlp", "transformer", "mixer"),
    "predictor": ("savi", "identity", "none"),
    "time_decoder": ("linear", "attn", "identity"),
    "pe_type": ("linear", "sine", "learnt"),
    "input_pe": ("none", "linear"),
    "blend": ("alpha", "attention"),
    "loss_norm": ("target", "prediction"),
    "style": ("dinosavi", "original"),
    "bgfg_strategy": ("initial", "always"),
    "condition": ("none", "kmeans", "attention"),
}
FEATURE_DTYPES = ("fp16", "fp32")
RESOLUTION_NAMES = ("train", "eval")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02\x8a")  # a torch.save zip archive, or its legacy pickle stream


class ConfigError(ValueError):
    """A value of the config (named by its key), or a file it names, is not what is expected."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A file or folder the config names does not exist."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _at_least(node: DictConfig, section: str, keys: dict[str, int], optional: tuple[str, ...] = ()) -> None:
    """``section.key >= minimum`` for each of ``keys`` of the section ``node``; those in ``optional`` may be null."""
    for key, minimum in keys.items():
        value = node[key]
        if value is None and key in optional:
            continue
        _expect(value >= minimum, f"{section}.{key}={value}: expected an integer >= {minimum}"
                + (" or null" if key in optional else ""))


def _options(build: Callable[[], object], key: str) -> None:
    """Build a section's options dataclass (its own checks run); a message that does not name the key gets it."""
    try:
        build()
    except ValueError as error:
        text = str(error)
        raise ConfigError(text if text.startswith(f"{key}.") or f" {key}." in text else f"{key}: {text}") from error


def _as_config_error(check: Callable[[], object]) -> None:
    try:
        check()
    except ValueError as error:
        raise ConfigError(str(error)) from error


def _check_values(cfg: DictConfig) -> None:
    _expect(bool(_DEVICE.fullmatch(str(cfg.device))), f"device={cfg.device}: expected auto, cpu, cuda or cuda:<index>")
    _expect(cfg.method in METHODS, f"Unknown method `{cfg.method}`; expected one of {METHODS} (method=)")
    data = cfg.data
    _expect(data.name in DATASET_LAYOUTS, f"Unknown dataset `{data.name}` (data.name); expected one of "
            f"{tuple(DATASET_LAYOUTS)}")
    _at_least(data, "data", {"batch_size": 1, "num_workers": 0, "frames_per_clip": 1, "stride": 1,
                            "clips_per_video": 1})
    _expect(data.frame_rate is None or data.frame_rate > 0, f"data.frame_rate={data.frame_rate}: expected a "
            "positive number of frames per second, or null for every frame")
    _expect(0.0 <= data.max_bad_fraction <= 1.0,
            f"data.max_bad_fraction must lie in [0, 1], got {data.max_bad_fraction:g}")
    _at_least(data, "data", {"heldout_videos": 0})
    _as_config_error(lambda: check_range(data.start, data.stop))
    _options(lambda: OmegaConf.to_object(data.synthetic), "data.synthetic")
    encoder = cfg.encoder
    _expect(encoder.name in ENCODER_NAMES or str(encoder.name).startswith(ENCODER_PREFIXES),
            f"Unknown encoder `{encoder.name}` (encoder.name); expected one of {list(ENCODER_NAMES)} or "
            f"{', '.join(p + '<name>' for p in ENCODER_PREFIXES)}")
    _expect(encoder.stride in ENCODER_STRIDES, f"encoder.stride={encoder.stride}: expected one of {ENCODER_STRIDES}")
    _at_least(encoder, "encoder", {"batch_size": 1})
    _expect(encoder.precision in PRECISIONS, f"Unknown encoder.precision `{encoder.precision}`; expected one of "
            f"{sorted(PRECISIONS)}")
    _expect(cfg.features.dtype in FEATURE_DTYPES, f"features.dtype={cfg.features.dtype}: expected one of "
            f"{FEATURE_DTYPES}")
    _expect(len(cfg.features.resolutions) > 0 and set(cfg.features.resolutions) <= set(RESOLUTION_NAMES),
            f"Unknown features.resolutions "
            f"{list(cfg.features.resolutions)}; expected a non-empty subset of {RESOLUTION_NAMES}")
    _check_model(cfg.model)
    _options(lambda: OmegaConf.to_object(cfg.train), "train")
    _expect(cfg.eval.protocol in EVAL_PROTOCOLS, f"Unknown eval.protocol `{cfg.eval.protocol}`; expected one of "
            f"{EVAL_PROTOCOLS} (eval=<protocol> sets it with its options)")
    _options(lambda: OmegaConf.to_object(cfg.eval), "eval")
    _at_least(cfg.eval, "eval", {"short_side": 1, "num_bg_slots": 0, "slots_per_class": 1, "num_extra_slots": 0,
                            "num_iters": 1, "ini_iters": 1}, optional=("short_side", "num_iters", "ini_iters"))
    _expect(cfg.eval.track_temperature > 0, f"eval.track_temperature={cfg.eval.track_temperature}: expected > 0")
    _options(lambda: OmegaConf.to_object(cfg.score), "score")
    _at_least(cfg.score, "score", {"max_proposals": 1})
    _options(lambda: OmegaConf.to_object(cfg.propagate), "propagate")
    _at_least(cfg.propagate, "propagate", {"short_side": 1, "multiple_of": 1})
    segment = cfg.segment
    _at_least(segment, "segment", {"short_side": 1, "chunk_frames": 1, "first_mask_frame": 0},
              optional=("short_side", "first_mask_frame"))
    _expect(segment.start >= 0 and (segment.stop is None or segment.stop > segment.start),
            f"segment.start={segment.start}, segment.stop={segment.stop}: expected 0 <= start < stop "
            "(stop null: to the end)")
    _expect(segment.max_fps is None or segment.max_fps > 0, f"segment.max_fps={segment.max_fps}: expected a "
            "positive number of frames per second, or null for every frame")
    _expect(segment.folder_fps > 0, f"segment.folder_fps={segment.folder_fps}: expected a positive number of "
            "frames per second")
    _at_least(cfg.demo, "demo", {"davis_short_side": 1, "natural_steps": 1, "natural_clips_per_video": 1})
    _expect(0 <= cfg.demo.fuse <= 1, f"demo.fuse={cfg.demo.fuse}: expected a number in [0, 1]")


def _check_model(model: DictConfig) -> None:
    for key, allowed in MODEL_CHOICES.items():
        _expect(model[key] in allowed, f"Unknown model.{key} `{model[key]}`; expected one of {allowed}")
    _at_least(model, "model",
              {"slot_dim": 1, "hidden_dim": 1, "num_iters": 1, "ini_iters": 1, "num_heads": 1, "decoder_depth": 1,
               "decoder_kernel_size": 1, "decoder_hidden_dim": 1, "pe_dim": 1}, optional=("ini_iters",))
    slots = OmegaConf.to_container(model.num_slots) if isinstance(model.num_slots, ListConfig) else model.num_slots
    try:
        count = slot_count(slots)
    except ValueError as error:
        raise ConfigError(f"model.num_slots={slots}: expected a positive integer, or [bg, fg] with "
                          "model.bgfg") from error
    _expect(isinstance(count, int) != bool(model.bgfg), f"model.num_slots={slots} with model.bgfg={model.bgfg}: "
            "expected [bg, fg] slot counts with bgfg=true, one integer without")
    _expect(len(model.pe_size) == 2 and min(model.pe_size) >= 1, f"model.pe_size={list(model.pe_size)}: expected "
            "[h, w] of positive sizes")
    _expect(len(model.time_steps) >= 1 and min(model.time_steps) >= 0, f"model.time_steps={list(model.time_steps)}: "
            "expected frame offsets >= 0, at least one")
    for key in ("condition_share", "anchor"):
        _expect(0 <= model[key] <= 1, f"model.{key}={model[key]}: expected a number in [0, 1]")
    for key in ("track_weight", "contrast_weight"):
        _expect(model[key] >= 0, f"model.{key}={model[key]}: expected a weight >= 0")
    _expect(model.contrast_temperature > 0, f"model.contrast_temperature={model.contrast_temperature}: expected > 0")


def _path(key: str, value: str, kind: str = "file or folder") -> Path:
    path = Path(value)
    if not path.exists():
        raise ConfigFileNotFoundError(f"{key}={value} does not exist; expected a {kind}")
    return path


def _missing_recipe(value: str, config: dict) -> None:
    missing = [s for s in ("preset", "model", "encoder") if s not in config]
    _expect(not missing, f"{value} holds no `{missing[0] if missing else ''}` section in its config, so the model "
            "cannot be rebuilt from it: it was saved without its config (train(..., config=...) and "
            "save_checkpoint(path, model, config) store it; mode=train always does)")


def _check_model_folder(value: str, path: Path, needs_recipe: bool) -> None:
    """``resume=<folder>`` holding a file of ``mode=export``'s model folder: both files, and its config."""
    missing = [name for name in MODEL_FOLDER_FILES if not (path / name).is_file()]
    if missing:
        raise ConfigFileNotFoundError(f"resume={value} is not a model folder: {' and '.join(missing)} missing; "
                                      f"expected {' and '.join(MODEL_FOLDER_FILES)} in it (written by mode=export)")
    try:
        meta = json.loads((path / MODEL_FOLDER_FILES[0]).read_text())
    except ValueError as error:
        raise ConfigError(f"{path / MODEL_FOLDER_FILES[0]} is not JSON (resume=): {error}") from None
    _expect(isinstance(meta, dict) and meta.get("format") == MODEL_FOLDER_FORMAT,
            f"{path / MODEL_FOLDER_FILES[0]} is not a dinosavi model config (resume=; expected format "
            f"{MODEL_FOLDER_FORMAT!r}, a folder written by mode=export)")
    if needs_recipe:
        _missing_recipe(value, meta.get("config") or {})


def _check_checkpoint(value: str, needs_recipe: bool, trains: bool = False) -> None:
    """``resume=``: a file that is a dinosavi safetensors checkpoint (with its recipe when ``needs_recipe``)
    or a torch ``.ckpt`` (an original DINOSAVi checkpoint), judged from its header alone; a model folder of
    ``mode=export``, or ``hf://owner/name[@revision]`` (its form only: it is fetched when loaded), which hold
    weights only, so that ``trains`` (``mode=train``, which continues a run) cannot take them."""
    expected = ("a checkpoint file: checkpoints/<step>.safetensors written by mode=train, or an original DINOSAVi "
                ".ckpt" + ("" if trains else "; or a model folder written by mode=export, or hf://owner/name"))
    weights_only = ("holds weights only (no optimizer state), so mode=train cannot continue it; expected "
                    "checkpoints/<step>.safetensors of the run")
    if value.startswith(HF_PREFIX):
        _expect(bool(_HF_URI.fullmatch(value)), f"resume={value} is not a Hub name; expected "
                f"{HF_PREFIX}owner/name[@revision]")
        _expect(not trains, f"resume={value} is a model on the Hub, which {weights_only}")
        return
    path = Path(value)
    if not path.exists():
        raise ConfigFileNotFoundError(f"checkpoint not found: {value} (resume=); expected {expected}")
    if path.is_dir():
        if any((path / name).exists() for name in MODEL_FOLDER_FILES):
            _check_model_folder(value, path, needs_recipe)
            _expect(not trains, f"resume={value} is a model folder (mode=export), which {weights_only}")
            return
        inside = [p for p in (path / "checkpoints" / "last.safetensors", path / "last.safetensors") if p.is_file()]
        hint = f"; it holds {inside[0]}" if inside else ""
        raise ConfigError(f"resume={value} is a folder, not a checkpoint; expected {expected}{hint}")
    with open(path, "rb") as f:
        head = f.read(8)
        if any(head.startswith(magic) for magic in _TORCH_MAGIC):
            return
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        header = f.read(size) if 1 < size <= min(path.stat().st_size - 8, 1 << 27) else b""
    try:
        metadata = json.loads(header).get("__metadata__") or {}
    except (ValueError, AttributeError):
        raise ConfigError(f"{value} is not a readable safetensors checkpoint (resume=): neither a safetensors file nor "
                          f"a torch .ckpt; expected {expected}") from None
    if "dinosavi" not in metadata:
        raise ConfigError(f"{value} is not a dinosavi checkpoint (resume=): a safetensors file without dinosavi's "
                          f"metadata; expected {expected}")
    if needs_recipe:
        try:
            config = json.loads(metadata["dinosavi"]).get("config") or {}
        except (ValueError, AttributeError):
            return  # a damaged checkpoint: loading it says where
        _missing_recipe(value, config)


def _check_split(cfg: DictConfig, split: str | None) -> None:
    """The split file of a DAVIS-layout root (every split when ``split`` is None), and ``data.sequences`` in it."""
    data = cfg.data
    folder = Path(data.root) / "ImageSets" / str(data.year)
    if split is None:
        return
    split_file = folder / f"{split}.txt"
    if not split_file.is_file():
        splits = ", ".join(sorted(p.stem for p in folder.glob("*.txt"))) or "none"
        raise ConfigFileNotFoundError(f"Split file not found: {split_file} (data.split={split}); the splits of "
                                      f"{data.root}: {splits}")
    names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    _expect(bool(names), f"Split file {split_file} lists no sequences")
    if data.sequences is not None:
        _as_config_error(lambda: select_names(names, [str(n) for n in data.sequences],
                                              f"split {split} of data.root={data.root}"))


def _check_data(cfg: DictConfig, mode: str) -> None:
    """``data.root`` (and a DAVIS layout's split) for the modes that read it."""
    data = cfg.data
    selects = data.sequences is not None or data.start != 0 or data.stop is not None
    _expect(not (selects and mode in ("train", "cache")), f"data.sequences, data.start and data.stop select what "
            f"mode=eval, propagate and score read; mode={mode} reads whole splits")
    generated = data.name == "synthetic" and mode in ("train", "eval")  # made at data.root when absent
    root = Path(data.root)
    if not root.is_dir():
        if not generated:
            raise ConfigFileNotFoundError(f"data.root={data.root} is not a folder (data={data.name}); expected "
                                          f"{DATASET_LAYOUTS[data.name]}")
        return
    if data.name in ("davis", "synthetic"):
        default = None if mode == "cache" else "train" if mode == "train" else "val"
        _check_split(cfg, data.split if data.split is not None else default)


def _check_inputs(cfg: DictConfig, mode: str) -> None:
    """What each mode needs besides the values: ``resume=``, ``input=``, ``first_mask=``, ``results=``, data."""
    if cfg.encoder.weights:
        _path("encoder.weights", cfg.encoder.weights, "weights file or folder")
    method = "propagate" if mode == "propagate" else cfg.method
    if mode == "eval":
        _expect(bool(cfg.resume), "mode=eval needs resume=<checkpoint.safetensors>")
    if mode == "convert":
        _expect(bool(cfg.resume), "mode=convert needs resume=<original DINOSAVi .ckpt>")
    if mode == "export":
        _expect(bool(cfg.resume), "mode=export needs resume=<checkpoint.safetensors>")
        _expect(not cfg.export.push or bool(cfg.export.repo), "export.push=true needs export.repo=<owner/name>, the "
                "Hub repository to upload to")
        for result in cfg.export.results:
            _path("export.results", str(result), "results JSON file or evaluation run directory")
    if mode == "segment" or (mode == "propagate" and cfg.input):
        _expect(bool(cfg.input), "mode=segment needs input=<video file, folder of frames or folder of videos>")
        _path("input", cfg.input, "video file, a folder of frames or a folder of videos")
        if method == "slots":
            _expect(bool(cfg.resume), "mode=segment needs resume=<checkpoint.safetensors> (a slot model), or "
                    "method=propagate first_mask=<palette PNG> with any encoder=")
        else:
            _expect(bool(cfg.first_mask), "method=propagate needs first_mask=<palette PNG of the first frame>")
    if cfg.first_mask and mode in ("segment", "propagate"):
        _expect(_path("first_mask", cfg.first_mask, "palette PNG").is_file(), f"first_mask={cfg.first_mask} is a "
                "folder; expected the palette PNG of a frame")
    if cfg.resume and (mode in ("train", "eval", "convert", "export") or (mode == "segment" and method == "slots")):
        _check_checkpoint(str(cfg.resume), needs_recipe=mode in ("eval", "segment", "export"), trains=mode == "train")
    if mode == "score":
        _expect(bool(cfg.results), "mode=score needs results=<folder of <seq>/<frame>.png palette PNGs, or a run "
                "directory>")
        _expect(_path("results", cfg.results, "folder").is_dir(), f"results={cfg.results} is a file; expected a "
                "folder of <seq>/<frame>.png palette PNGs, or a run directory")
    if mode == "cache":
        _expect(bool(cfg.features.store), "mode=cache needs features.store=<folder>")
    reads_data = mode in ("eval", "cache", "score") or (mode == "propagate" and not cfg.input) or (
        mode == "train" and not cfg.resume)
    if reads_data:
        _check_data(cfg, mode)


def check_config(cfg: DictConfig) -> None:
    """Check every user-facing value of ``cfg`` by key, and the files and folders its mode reads.

    Raises:
        ConfigError: a value out of range or not one of the allowed names (the message names the key and
            what was expected), or a file that is not what its key needs (naming it).
        ConfigFileNotFoundError: a file or folder the mode reads does not exist.
    """
    _check_values(cfg)
    _check_inputs(cfg, str(cfg.mode))
