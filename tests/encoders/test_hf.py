"""Frozen Hugging Face ViTs: timm and transformers agree on the same weights, CLS attention against eager
attention (ViT, DINOv2, DINOv2 with registers), the timm-to-transformers key mapping, the preprocessing read next
to the weights, and offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dinosavi.encoders import HFViT, TimmViT, create_encoder
from dinosavi.encoders.hf import _hf_preprocess, timm_to_hf_vit_state_dict
from tests.encoders.conftest import TINY

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("offline")


@pytest.mark.parametrize("size", [(224, 224), (256, 320)])
def test_timm_and_hf_agree(saved: tuple[Path, Path], size: tuple[int, int]) -> None:
    timm_file, hf_dir = saved
    ours = create_encoder(f"timm:{TINY}", weights=str(timm_file))
    theirs = create_encoder(f"hf:{hf_dir}")
    assert isinstance(ours, TimmViT) and isinstance(theirs, HFViT)
    assert (theirs.feature_dim, theirs.num_heads, theirs.patch_size) == (192, 3, 16)
    assert theirs.preprocess == ours.preprocess
    images = torch.randn(2, 3, *size)
    with torch.inference_mode():
        a, b = ours(images), theirs(images)
    assert a.features.shape == (2, 192, size[0] // 16, size[1] // 16)
    torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=0)
    assert a.cls_attention is not None and b.cls_attention is not None
    torch.testing.assert_close(a.cls_attention, b.cls_attention, atol=1e-5, rtol=0)


def test_hf_cls_attention_matches_eager(saved: tuple[Path, Path]) -> None:
    _, hf_dir = saved
    encoder = create_encoder(f"hf:{hf_dir}")
    eager = transformers.ViTModel.from_pretrained(hf_dir, attn_implementation="eager",
                                                  add_pooling_layer=False)
    images = torch.randn(1, 3, 224, 288)
    with torch.inference_mode():
        out = encoder(images)
        ref = eager(pixel_values=images, interpolate_pos_encoding=True, output_attentions=True)
    expected = ref.attentions[-1][:, :, 0, 1:].reshape(1, 3, 14, 18)
    assert out.cls_attention is not None
    torch.testing.assert_close(out.cls_attention, expected, atol=1e-5, rtol=0)


def test_hf_offline_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)`facebook/dinov2-small`.*hf:<local dir>"):
        create_encoder("hf:facebook/dinov2-small")
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        create_encoder(f"hf:{tmp_path}")


@pytest.mark.parametrize("family", ["dinov2", "dinov2_with_registers"])
def test_hf_dinov2_cls_attention_matches_eager(tmp_path: Path, family: str) -> None:
    torch.manual_seed(0)
    if family == "dinov2":
        config = transformers.Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                           image_size=56, patch_size=14)
        model = transformers.Dinov2Model(config)
    else:
        config = transformers.Dinov2WithRegistersConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                                        image_size=56, patch_size=14, num_register_tokens=4)
        model = transformers.Dinov2WithRegistersModel(config)
    model.save_pretrained(tmp_path)
    transformers.BitImageProcessor(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                   resample=3).save_pretrained(tmp_path)
    encoder = create_encoder(f"hf:{tmp_path}", layers=(0,))
    prefix = 1 + (4 if family != "dinov2" else 0)
    assert encoder.num_heads == 3 and encoder.patch_size == 14 and encoder.feature_dim == 48
    assert encoder.preprocess.interpolation == "bicubic"
    model.set_attn_implementation("eager")
    images = torch.randn(1, 3, 56, 84)
    with torch.inference_mode():
        out = encoder(images)
        ref = model.eval()(pixel_values=images, output_attentions=True)
    assert out.features.shape == (1, 48, 4, 6) and out.intermediate[0].shape == (1, 48, 4, 6)
    torch.testing.assert_close(out.features.flatten(2).transpose(1, 2), ref.last_hidden_state[:, prefix:])
    assert out.cls_attention is not None
    torch.testing.assert_close(out.cls_attention.flatten(2), ref.attentions[-1][:, :, 0, prefix:],
                               atol=1e-5, rtol=0)


def test_timm_keys_map_to_transformers_keys() -> None:
    qkv = torch.arange(12.0).view(6, 2)  # D 2: q, k and v are two rows each
    mapped = timm_to_hf_vit_state_dict({
        "cls_token": torch.zeros(1, 1, 2), "norm.bias": torch.ones(2), "head.weight": torch.ones(5, 2),
        "blocks.3.attn.qkv.weight": qkv, "blocks.3.norm1.weight": torch.full((2,), 2.0),
        "blocks.3.attn.proj.bias": torch.full((2,), 3.0), "blocks.3.mlp.fc2.weight": torch.full((2, 8), 4.0),
    })
    assert sorted(mapped) == sorted([
        "embeddings.cls_token", "layernorm.bias", "layers.3.attention.q_proj.weight",
        "layers.3.attention.k_proj.weight", "layers.3.attention.v_proj.weight", "layers.3.layernorm_before.weight",
        "layers.3.attention.o_proj.bias", "layers.3.mlp.fc2.weight",
    ])  # the classifier head is dropped
    assert torch.equal(mapped["layers.3.attention.q_proj.weight"], qkv[:2])
    assert torch.equal(mapped["layers.3.attention.k_proj.weight"], qkv[2:4])
    assert torch.equal(mapped["layers.3.attention.v_proj.weight"], qkv[4:])
    assert torch.equal(mapped["layers.3.layernorm_before.weight"], torch.full((2,), 2.0))


@pytest.mark.parametrize("key", ["fc_norm.weight", "blocks.0.ls1.gamma", "reg_token"])
def test_an_unmapped_timm_key_is_named(key: str) -> None:
    with pytest.raises(ValueError, match=rf"cannot map timm key `{key}` to a transformers ViTModel key"):
        timm_to_hf_vit_state_dict({key: torch.zeros(2)})


@pytest.mark.parametrize(("resample", "interpolation"), [(0, "nearest"), (2, "bilinear"), (3, "bicubic"),
                                                         (None, "bilinear")])
def test_preprocessing_comes_from_preprocessor_config(tmp_path: Path, resample: int | None,
                                                      interpolation: str) -> None:
    config = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.1, 0.25]}
    if resample is not None:
        config["resample"] = resample
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    preprocess = _hf_preprocess(str(tmp_path))
    assert preprocess.mean == (0.5, 0.4, 0.3) and preprocess.std == (0.2, 0.1, 0.25)
    assert preprocess.interpolation == interpolation


def test_missing_preprocessing_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json not found; it must give image_mean"):
        _hf_preprocess(str(tmp_path))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "size": 224}))
    with pytest.raises(FileNotFoundError, match=r"has no image_mean/image_std; got keys \['image_mean', 'size'\]"):
        _hf_preprocess(str(tmp_path))


def test_hf_encoder_is_frozen_and_uses_the_patch_size_for_its_default_resize(saved: tuple[Path, Path]) -> None:
    _, hf_dir = saved
    encoder = create_encoder(f"hf:{hf_dir}")
    assert isinstance(encoder, HFViT) and encoder.num_prefix_tokens == 1
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert encoder.default_resize.short_side == 480 and encoder.default_resize.multiple_of == 16
    with pytest.raises(ValueError, match="layer index 12 out of range"):
        create_encoder(f"hf:{hf_dir}", layers=(12,))
