"""Frozen ViT registry: DINO architectures by name, registers, unknown timm models."""

from __future__ import annotations

import pytest
import torch

from dinosavi.encoders import TIMM_VITS, TimmViT, create_encoder
from dinosavi.encoders.registry import build_timm_vit

pytestmark = pytest.mark.usefixtures("offline")


@pytest.mark.parametrize(("name", "arch"), [
    ("dino_vits8", (8, 384, 6, 12)), ("dino_vits16", (16, 384, 6, 12)), ("dino_vitb8", (8, 768, 12, 12)),
    ("dino_vitb16", (16, 768, 12, 12)), ("dinov2_vits14", (14, 384, 6, 12)),
    ("dinov2_vitb14", (14, 768, 12, 12)),
])
def test_dino_architectures(name: str, arch: tuple[int, int, int, int]) -> None:
    model = build_timm_vit(TIMM_VITS[name])
    encoder = TimmViT(model)
    assert (encoder.patch_size, encoder.feature_dim, encoder.num_heads, len(model.blocks)) == arch
    assert encoder.preprocess.mean == (0.485, 0.456, 0.406) and encoder.preprocess.interpolation == "bicubic"


def test_dinov2_output_shapes() -> None:
    encoder = TimmViT(build_timm_vit(TIMM_VITS["dinov2_vits14"]))
    with torch.inference_mode():
        out = encoder(torch.randn(1, 3, 112, 168))
    assert out.features.shape == (1, 384, 8, 12)
    assert out.cls_attention is not None and out.cls_attention.shape == (1, 6, 8, 12)


def test_registers_are_dropped() -> None:
    encoder = TimmViT(build_timm_vit("vit_small_patch14_reg4_dinov2.lvd142m"))
    assert encoder.num_prefix_tokens == 5
    with torch.inference_mode():
        out = encoder(torch.randn(1, 3, 56, 84))
    assert out.features.shape == (1, 384, 4, 6)
    assert out.cls_attention is not None and out.cls_attention.shape == (1, 6, 4, 6)


def test_unknown_timm_model() -> None:
    with pytest.raises(ValueError, match="Unknown timm model `vit_nonsense`"):
        create_encoder("timm:vit_nonsense")
