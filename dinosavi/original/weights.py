"""The one key mapping from the original DINOSAVi's ``SlotTrainer`` state dict to :class:`SlotModel`'s.

:func:`original_to_dinosavi` names every original key, checks every shape and is strict both ways: an
original key it does not know, a model key nothing maps to, or a shape that differs is an error naming the
key. Layout changes: the slot-group parameters ``groups_mu.{g}`` (``(1, 1, D)`` each) are stacked into
``group_mu`` ``(G, 1, D)``; the first decoder convolution's input channels are reordered from the original's
``[pe, slot]`` to ours ``[slot, pe]``. One original tensor is dropped on purpose: the linear PE buffer
``decoder.broadcast.pe``, which the original's forward pass never reads (it regenerates the grid); it is
checked to be that grid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.slot_model import SlotModel

__all__ = ["ORIGINAL_KEYS", "original_to_dinosavi"]

# original key (regex) -> our key (template with the regex groups); the order is the original's state dict.
ORIGINAL_KEYS: tuple[tuple[str, str], ...] = (
    (r"model\.attn\.slots_mu", "frame.slot_init.mu"),
    (r"model\.attn\.slots_logvar", "frame.slot_init.log_sigma"),
    (r"model\.attn\.norm_in\.(weight|bias)", r"frame.slot_attention.norm_inputs.\1"),
    (r"model\.attn\.(norm_slots|norm_mlp)\.(weight|bias)", r"frame.slot_attention.\1.\2"),
    (r"model\.attn\.(project_q|project_k|project_v)\.weight", r"frame.slot_attention.\1.weight"),
    (r"model\.attn\.gru\.(weight_ih|weight_hh|bias_ih|bias_hh)", r"frame.slot_attention.gru.\1"),
    (r"model\.attn\.mlp\.(0|2)\.(weight|bias)", r"frame.slot_attention.mlp.\1.\2"),
    (r"model\.attn\.groups_mu\.(\d+)", r"frame.slot_init.group_mu[\1]"),
    (r"model\.attn\.groups_logvar\.(\d+)", r"frame.slot_init.group_log_sigma[\1]"),
    (r"model\.slot_predictor\.attn\.(in_proj_weight|in_proj_bias)", r"predictor.attn.\1"),
    (r"model\.slot_predictor\.attn\.out_proj\.(weight|bias)", r"predictor.attn.out_proj.\1"),
    (r"model\.slot_predictor\.mlp\.(weight|bias)", r"predictor.mlp.\1"),
    (r"model\.slot_predictor\.ln_attn\.(weight|bias)", r"predictor.norm_attn.\1"),
    (r"model\.slot_predictor\.ln_mlp\.(weight|bias)", r"predictor.norm_mlp.\1"),
    (r"decoder\.broadcast\.pe", "frame.decoder.pos_embed.pe"),
    (r"decoder\.conv\.cnn\.(\d+)\.(weight|bias)", "frame.decoder.convs.{conv}.{1}"),
    (r"time_decoder\.(\d+)\.(weight|bias|in_proj_weight|in_proj_bias)", r"time_decoders.\1.layer.\2"),
    (r"time_decoder\.(\d+)\.out_proj\.(weight|bias)", r"time_decoders.\1.layer.out_proj.\2"),
    (r"layernorm\.(weight|bias)", r"prediction_norm.\1"),
)
_STACKED = re.compile(r"(.+)\[(\d+)\]")


def _target(key: str) -> str | None:
    for pattern, template in ORIGINAL_KEYS:
        m = re.fullmatch(pattern, key)
        if m is None:
            continue
        if "{conv}" in template:  # the original's nn.Sequential interleaves ReLUs: conv i is cnn.{2i}
            index = int(m.group(1))
            return None if index % 2 else template.format(None, m.group(2), conv=index // 2)
        return m.expand(template)
    return None


def original_to_dinosavi(state_dict: Mapping[str, Tensor], model: SlotModel) -> dict[str, Tensor]:
    """Map an original ``SlotTrainer.state_dict()`` onto ``model``'s keys and layouts.

    Args:
        state_dict: the original's ``model`` entry.
        model: a :class:`SlotModel` built from the converted config (see
            :func:`dinosavi.original.config.convert_config`); its keys and shapes are the contract.

    Returns:
        A state dict that ``model.load_state_dict(..., strict=True)`` accepts.

    Raises:
        ValueError: an original key with no mapping, a model key no original tensor fills, or a shape
            mismatch; the message names the keys and shapes.
    """
    if not isinstance(model.frame.decoder, AlphaDecoder):
        raise ValueError(f"the original's decoder is the alpha (spatial broadcast) decoder; the model has "
                         f"{type(model.frame.decoder).__name__}")
    expected = model.state_dict()
    pos_embed = model.frame.decoder.pos_embed
    out: dict[str, Tensor] = {}
    stacked: dict[str, dict[int, Tensor]] = {}
    for key, value in state_dict.items():
        target = _target(key)
        if target is None:
            raise ValueError(f"original key `{key}` {tuple(value.shape)} has no mapping to this package's model")
        if key == "decoder.broadcast.pe" and pos_embed.pe_type == "linear":
            _check_linear_pe(value, pos_embed(*pos_embed.size))
            continue
        m = _STACKED.fullmatch(target)
        if m is not None:
            stacked.setdefault(m.group(1), {})[int(m.group(2))] = value
            continue
        if target == "frame.decoder.convs.0.weight":
            value = torch.cat([value[:, pos_embed.dim:], value[:, :pos_embed.dim]], dim=1)  # [pe, slot] -> [slot, pe]
        _put(out, target, value, expected, key)
    for target, parts in stacked.items():
        if sorted(parts) != list(range(len(parts))):
            raise ValueError(f"original slot-group tensors for `{target}` are numbered {sorted(parts)}; expected "
                             f"0..{len(parts) - 1}")
        _put(out, target, torch.cat([parts[g] for g in range(len(parts))]), expected, f"{target} groups")
    missing = [k for k in expected if k not in out]
    if missing:
        raise ValueError(f"the original checkpoint has no tensor for `{missing[0]}` {tuple(expected[missing[0]].shape)}"
                         f" (missing: {missing}); its config and weights disagree")
    return out


def _put(out: dict[str, Tensor], target: str, value: Tensor, expected: Mapping[str, Tensor], source: str) -> None:
    if target not in expected:
        raise ValueError(f"original key `{source}` maps to `{target}`, which the model built from its config does "
                         f"not have (its config and weights disagree)")
    if tuple(value.shape) != tuple(expected[target].shape):
        raise ValueError(f"original key `{source}` has shape {tuple(value.shape)}; `{target}` expects "
                         f"{tuple(expected[target].shape)}")
    if target in out:
        raise ValueError(f"two original keys map to `{target}` (the second is `{source}`)")
    out[target] = value.detach().clone().to(expected[target].dtype)


def _check_linear_pe(value: Tensor, grid: Tensor) -> None:
    """The original stores its linear PE ``grid`` of ``pe_size`` as a buffer and never reads it; check it is one."""
    if tuple(value.shape) != tuple(grid.shape) or not torch.allclose(value.float(), grid.cpu(), atol=1e-6):
        raise ValueError(f"original key `decoder.broadcast.pe` {tuple(value.shape)} is not the linear grid "
                         f"{tuple(grid.shape)} that the original regenerates; is the checkpoint's pe_type linear?")
