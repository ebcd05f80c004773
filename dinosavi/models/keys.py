"""Versions of a slot model's state-dict keys, and the named mappings that bring older checkpoints to today's.

A checkpoint records the version of its model's keys (:data:`MODEL_KEYS`); one written before versions were
recorded is version 1. Reading it applies the mappings in order, so weights saved by every earlier version
load strictly into today's model (timm's ``checkpoint_filter_fn`` habit, with the version written down).

- version 1 → 2: :class:`~dinosavi.models.slot_model.SlotModel` holds its per-frame parts in ``frame``
  (:class:`~dinosavi.models.frame.FrameModel`) instead of inheriting them: ``slot_attention.*`` became
  ``frame.slot_attention.*``, and so on (:func:`frame_keys_v1_to_v2`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

__all__ = ["MODEL_KEYS", "feature_width", "frame_keys_v1_to_v2", "upgrade_model_keys"]

MODEL_KEYS = 2  # the version of SlotModel's state-dict keys that this code writes

# the first module to see the features, LayerNorm(D): the input MLP's, or slot attention's without an input MLP
_FEATURE_NORMS = ("frame.input_mlp.0.weight", "frame.slot_attention.norm_inputs.weight")

# the per-frame modules that version 1 kept at the top of SlotModel
_FRAME_MODULES = ("input_mlp.", "input_pe.", "slot_init.", "slot_attention.", "decoder.")


def frame_keys_v1_to_v2(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Version 1 → 2: the per-frame modules' keys move under ``frame.``; the others are unchanged."""
    return {f"frame.{key}" if key.startswith(_FRAME_MODULES) else key: value for key, value in state.items()}


_UPGRADES: dict[int, Callable[[Mapping[str, Tensor]], dict[str, Tensor]]] = {1: frame_keys_v1_to_v2}


def upgrade_model_keys(state: Mapping[str, Tensor], version: int, source: str = "the checkpoint") -> dict[str, Tensor]:
    """A model state dict saved with key ``version`` under today's keys (:data:`MODEL_KEYS`).

    Raises:
        ValueError: a version newer than this code's, or not a positive integer (``source`` names the file).
    """
    if not isinstance(version, int) or not 1 <= version <= MODEL_KEYS:
        raise ValueError(f"{source}: model keys of version {version!r}; this dinosavi reads versions 1 to "
                         f"{MODEL_KEYS} (a newer dinosavi wrote it?)")
    upgraded = dict(state)
    for old in range(version, MODEL_KEYS):
        upgraded = _UPGRADES[old](upgraded)
    return upgraded


def feature_width(state: Mapping[str, Tensor]) -> int | None:
    """The channels ``D`` of the features the model of a state dict (today's keys) takes: the size of the first
    LayerNorm they go through. None when the state dict has neither (not a slot model's)."""
    key = next((key for key in _FEATURE_NORMS if key in state), None)
    return None if key is None else int(state[key].shape[0])
