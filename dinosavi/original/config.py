"""The original DINOSAVi's config (as stored in its checkpoints) -> this package's config sections.

The original stores ``OmegaConf.to_container(cfg)`` of its whole composed Hydra config with the
interpolations unresolved: ``cfg.model`` is ``SlotTrainer``'s instantiation config whose values point into
``cfg.hparam`` (``${hparam.slot.num_slots}``, relative ``${..use_bgfg_groups}``). Every value the model
needs is resolved here from the file itself, with OmegaConf, key by key; values behind ``${hydra:...}``
(the ViT path) are read as text and never resolved. The result uses the original architecture options
(``input_mlp=false``, ``loss_norm=prediction``, ``style=original``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["ORIGINAL_ARCHITECTURE", "ORIGINAL_ENCODERS", "convert_config", "match_preset"]

log = logging.getLogger(__name__)

# The model options that make this package's SlotModel the original's.
ORIGINAL_ARCHITECTURE: dict[str, Any] = {"input_mlp": False, "loss_norm": "prediction", "style": "original",
                                         "input_pe": "none", "blend": "alpha", "decoder": "alpha"}
# The last part of the original's `hparam.general.vit_model` -> our encoder names.
ORIGINAL_ENCODERS = {"dino-vits8": "dino_vits8", "dino-vits16": "dino_vits16", "dino-vitb8": "dino_vitb8",
                     "dino-vitb16": "dino_vitb16"}
_TARGETS = {
    "model._target_": "SlotTrainer",
    "model.model._target_": "SlotModel",
    "model.decoder._target_": "AlphaSlotDecoder",
}
_PRESETS = Path(__file__).resolve().parents[1] / "conf" / "hparam"


_ABSENT = object()


def _get(cfg: DictConfig, key: str, path: Path, default: Any = _ABSENT) -> Any:
    """The resolved value at ``key`` (a list or dict as plain Python); ``default`` when absent, if given."""
    try:
        node = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=True)
    except OmegaConfBaseException as e:
        raise ValueError(f"{path}: the original config's `{key}` does not resolve: {e}") from e
    if node is _ABSENT:
        if default is _ABSENT:
            raise ValueError(f"{path}: the original config has no `{key}`; is this a DINOSAVi SlotTrainer checkpoint?")
        return default
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def convert_config(original: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Our config sections from the original's stored config.

    Args:
        original: the ``cfg`` entry of an original checkpoint (unresolved).
        path: the checkpoint, for error messages.

    Returns:
        A dict with ``preset``, ``model``, ``encoder``, ``train``, ``data`` (clip settings only) and ``eval``,
        each holding only keys of :mod:`dinosavi.cli.config`'s schema.

    Raises:
        ValueError: a key the model needs is missing, does not resolve, or names a class this package does not
            re-implement (the message names the key).
    """
    cfg = OmegaConf.create(dict(original))
    _check_classes(cfg, path)
    model = _model_section(cfg, path)
    encoder = _encoder_name(original, int(_get(cfg, "model.decoder.out_dim", path)), path)
    converted = {"model": model, "encoder": {"name": encoder}, "train": _train_section(cfg, original, path),
                 "data": _data_section(cfg, path), "eval": _eval_section(cfg, path)}
    return {"preset": match_preset(converted) or "original-checkpoint", **converted}


def _check_classes(cfg: DictConfig, path: Path) -> None:
    """Raise ``ValueError`` unless the config instantiates the original classes this package re-implements."""
    for key, expected in _TARGETS.items():
        target = str(_get(cfg, key, path))
        if target.rsplit(".", 1)[-1] != expected:
            raise ValueError(f"{path}: `{key}` is `{target}`; only the original's {expected} is supported")
    predictor = _get(cfg, "model.model.slot_predictor", path, None)
    if predictor is not None and str(predictor.get("_target_", "")).rsplit(".", 1)[-1] != "SAViSlotPredictor":
        raise ValueError(f"{path}: `model.model.slot_predictor._target_` is `{predictor.get('_target_')}`; "
                         f"expected SAViSlotPredictor or null")


def _model_section(cfg: DictConfig, path: Path) -> dict[str, Any]:
    """The ``model`` section: the original's architecture options and the values of its ``SlotTrainer``.

    Raises:
        ValueError: two keys that must agree (slot dims, bgfg groups, head counts) do not.
    """
    predictor = _get(cfg, "model.model.slot_predictor", path, None)
    time_steps = _get(cfg, "model.time_steps", path)
    time_steps = list(range(time_steps + 1)) if isinstance(time_steps, int) else [int(k) for k in time_steps]
    num_iters = int(_get(cfg, "model.num_iters", path))
    ini_iters = _get(cfg, "model.ini_iters", path, None)
    bgfg = bool(_get(cfg, "model.use_bgfg_groups", path))
    if bool(_get(cfg, "model.model.use_bgfg_groups", path)) != bgfg:
        raise ValueError(f"{path}: `model.use_bgfg_groups` and `model.model.use_bgfg_groups` disagree")
    slot_dim = int(_get(cfg, "model.model.slot_dim", path))
    if int(_get(cfg, "model.decoder.slot_dim", path)) != slot_dim:
        raise ValueError(f"{path}: `model.decoder.slot_dim` differs from `model.model.slot_dim` ({slot_dim})")
    time_decoder = _get(cfg, "model.time_decoder", path, None)
    num_heads = int(predictor.get("num_heads", 4)) if predictor is not None else 4
    if time_decoder == "attn" and num_heads != 4:
        raise ValueError(f"{path}: the original's attn time decoders have 4 heads, but the predictor has {num_heads}; "
                         f"this package uses one head count (model.num_heads) for both")
    if predictor is None and ini_iters not in (None, num_iters):
        log.warning("%s: without a predictor the original binds later frames with num_iters=%d, this package "
                    "with ini_iters=%s", path, num_iters, ini_iters)
    num_slots = _get(cfg, "model.num_slots", path)
    return {
        **ORIGINAL_ARCHITECTURE,
        "num_slots": num_slots if isinstance(num_slots, int) else [int(n) for n in num_slots],
        "slot_dim": slot_dim,
        "hidden_dim": int(_get(cfg, "model.model.slot_hid_dim", path)),
        "num_iters": num_iters,
        "ini_iters": None if ini_iters is None else int(ini_iters),
        "predictor": "none" if predictor is None else "savi",
        "num_heads": num_heads,
        "time_steps": time_steps,
        "time_decoder": "identity" if time_decoder is None else str(time_decoder),
        "decoder_depth": int(_get(cfg, "model.decoder.depth", path)),
        "decoder_kernel_size": int(_get(cfg, "model.decoder.kernel_size", path)),
        "decoder_hidden_dim": int(_get(cfg, "model.decoder.hid_dim", path)),
        "pe_type": str(_get(cfg, "model.decoder.pe_type", path)),
        "pe_dim": int(_get(cfg, "model.decoder.pe_dim", path, 4)),  # the original decoder's default
        "pe_size": [int(n) for n in _get(cfg, "model.decoder.pe_size", path)],
        "bgfg": bgfg,
        "bgfg_strategy": str(_get(cfg, "model.bgfg_strategy", path)),
    }


def _train_section(cfg: DictConfig, original: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The ``train`` section from ``hparam.general`` (the original's defaults where a key is absent)."""
    im_size = _get(cfg, "hparam.general.im_size", path, 224)
    clip = _get(cfg, "hparam.general.clip_gradnorm", path, None)
    return {
        "lr": float(_get(cfg, "hparam.general.lr", path, 1e-4)),
        "pct_start": float(_get(cfg, "hparam.general.pct_start", path, 0.1)),
        "grad_clip": None if clip is None else float(clip),
        "max_steps": int(original.get("total_steps") or 30000),
        "input_size": [int(im_size), int(im_size)],
        "weight_decay": 0.0,
    }


def _data_section(cfg: DictConfig, path: Path) -> dict[str, Any]:
    """The clip settings of the ``data`` section (the original's defaults where a key is absent)."""
    return {
        "batch_size": int(_get(cfg, "hparam.general.batch_size", path, 16)),
        "frames_per_clip": int(_get(cfg, "hparam.general.frames_per_clip", path, 8)),
        "frame_rate": float(_get(cfg, "hparam.general.framerate", path, 8)),
        "clips_per_video": int(_get(cfg, "hparam.general.epochs", path, 2)),
        "stride": 1,
    }


def _eval_section(cfg: DictConfig, path: Path) -> dict[str, Any]:
    """The ``eval`` section: the lock-on and iteration settings of ``hparam.eval``."""
    lock_on = _get(cfg, "hparam.eval.lock_on", path, {}) or {}
    return {
        "num_bg_slots": int(lock_on.get("num_bg_slots", 5)),
        "slots_per_class": int(lock_on.get("slots_per_class", 1)),
        "num_extra_slots": int(lock_on.get("num_extra_slots", 0)),
        "num_iters": _get(cfg, "hparam.eval.num_iters", path, None),
        "ini_iters": _get(cfg, "hparam.eval.ini_iters", path, None),
    }


def _encoder_name(original: Mapping[str, Any], feature_dim: int, path: Path) -> str:
    """Our encoder for the original's ``hparam.general.vit_model`` (read as text: it holds ``${hydra:...}``)."""
    vit = str(original.get("hparam", {}).get("general", {}).get("vit_model", ""))
    name = ORIGINAL_ENCODERS.get(vit.rstrip("/").rsplit("/", 1)[-1])
    if name is None:
        log.warning("%s: unknown original encoder `%s` (%d-d features); using dino_vits8, set encoder.name=... to "
                    "change it", path, vit, feature_dim)
        return "dino_vits8"
    return name


def match_preset(recipe: Mapping[str, Any]) -> str | None:
    """The first preset in ``conf/hparam`` (by name) whose ``model`` section and learning rate, gradient clip
    and clips per video equal ``recipe``'s (a converted config), so a converted checkpoint reports e.g.
    ``slot-s256d-line-t01-tline-ini5``; None when no preset matches. Presets with equal recipes (the
    original's ``slot-s512d`` is ``slot-control``) report the first."""
    wanted = _recipe(recipe)
    for preset in sorted(_PRESETS.glob("*.yaml")):
        loaded = OmegaConf.load(preset)
        assert isinstance(loaded, DictConfig), preset
        if _recipe(cast(dict[str, Any], OmegaConf.to_container(loaded))) == wanted:
            return preset.stem
    return None


def _recipe(cfg: Mapping[str, Any]) -> tuple[Any, ...]:
    model = dict(cfg.get("model", {}))
    train, data = cfg.get("train", {}), cfg.get("data", {})
    return (sorted(model.items()), train.get("lr"), train.get("grad_clip"), data.get("clips_per_video"))
