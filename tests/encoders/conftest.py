"""What the encoder tests share: the tiny random ViT, a hub that refuses the network, and one random tiny timm ViT
saved both as a timm ``model.safetensors`` and as a transformers directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from dinosavi.encoders import TimmViT, create_encoder
from dinosavi.encoders.hf import timm_to_hf_vit_state_dict
from dinosavi.encoders.registry import build_timm_vit

TINY = "vit_tiny_patch16_224"  # D 192, depth 12, 3 heads, patch 16


@pytest.fixture(scope="module")
def vit() -> TimmViT:
    encoder = create_encoder("vit_tiny_random")
    assert isinstance(encoder, TimmViT)
    return encoder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may touch the network: the hub is offline and its download function raises (a test module asks
    for it with ``pytestmark = pytest.mark.usefixtures("offline")``)."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import time

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError(f"network disabled in tests: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random tiny timm ViT saved as ``model.safetensors`` and the same weights as a transformers dir."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = build_timm_vit(TINY)
    with torch.no_grad():  # non-trivial norms and biases so a wrong mapping cannot hide
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    root = tmp_path_factory.mktemp("weights")
    timm_file = root / "timm" / "model.safetensors"
    timm_file.parent.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(timm_file))

    config = transformers.ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                                    intermediate_size=768, image_size=224, patch_size=16, layer_norm_eps=1e-6,
                                    qkv_bias=True, hidden_act="gelu")
    hf = transformers.ViTModel(config, add_pooling_layer=False)
    hf.load_state_dict(timm_to_hf_vit_state_dict(model.state_dict()), strict=True)
    hf_dir = root / "hf"
    hf.save_pretrained(hf_dir)
    cfg: dict[str, Any] = model.pretrained_cfg  # type: ignore[assignment]
    transformers.ViTImageProcessor(image_mean=list(cfg["mean"]), image_std=list(cfg["std"]),
                                   resample=3).save_pretrained(hf_dir)
    return timm_file, hf_dir
