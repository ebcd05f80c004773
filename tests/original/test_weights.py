"""The key mapping is strict: an unknown key, a missing key or a wrong shape is an error naming it."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from dinosavi.models.factory import build_model
from dinosavi.models.options import ModelConfig
from dinosavi.original.config import convert_config
from dinosavi.original.reader import read_original_checkpoint
from dinosavi.original.weights import original_to_dinosavi


def _original(seed_reference, tag):
    ckpt = read_original_checkpoint(seed_reference / f"{tag}.ckpt")
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), convert_config(ckpt.config, ckpt.path)["model"])
    return ckpt.model, build_model(cfg, 384)


@pytest.mark.parametrize("tag", ["headline", "bgfg"])
def test_every_key_maps_and_loads_strictly(tag, seed_reference):
    state, model = _original(seed_reference, tag)
    mapped = original_to_dinosavi(state, model)
    model.load_state_dict(mapped, strict=True)
    torch.testing.assert_close(mapped["prediction_norm.bias"], state["layernorm.bias"], atol=0, rtol=0)
    if tag == "bgfg":  # groups stacked, learnt PE kept as the original's (C, h, w) parameter
        assert torch.equal(mapped["frame.slot_init.group_mu"][1], state["model.attn.groups_mu.1"][0])
        assert torch.equal(mapped["frame.decoder.pos_embed.pe"], state["decoder.broadcast.pe"])
        first = state["decoder.conv.cnn.0.weight"]  # [pe (4), slot (256)] -> [slot, pe]
        assert torch.equal(mapped["frame.decoder.convs.0.weight"][:, :256], first[:, 4:])
    else:  # the linear PE buffer is dropped: the original never reads it
        assert "frame.decoder.pos_embed.pe" not in mapped


def test_unknown_missing_and_misshaped_keys_are_named(seed_reference):
    state, model = _original(seed_reference, "headline")
    with pytest.raises(ValueError, match=r"original key `model.attn.extra` \(3,\) has no mapping"):
        original_to_dinosavi({**state, "model.attn.extra": torch.zeros(3)}, model)
    with pytest.raises(ValueError, match=r"no tensor for `time_decoders.1.layer.bias`"):
        original_to_dinosavi({k: v for k, v in state.items() if k != "time_decoder.1.bias"}, model)
    with pytest.raises(ValueError, match=r"`model.attn.project_k.weight` has shape \(256, 383\); "
                                         r"`frame.slot_attention.project_k.weight` expects \(256, 384\)"):
        original_to_dinosavi({**state, "model.attn.project_k.weight": torch.zeros(256, 383)}, model)
    with pytest.raises(ValueError, match="is not the linear grid"):
        original_to_dinosavi({**state, "decoder.broadcast.pe": torch.zeros(2, 28, 28)}, model)
