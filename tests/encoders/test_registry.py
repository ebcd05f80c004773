"""Frozen ViT registry: timm vs. transformers on the same weights, DINO architectures, offline errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from dinosavi.encoders import TIMM_VITS, HFViT, TimmViT, create_encoder
from dinosavi.encoders.hf import timm_to_hf_vit_state_dict
from dinosavi.encoders.registry import build_timm_vit
from dinosavi.encoders.weights import load_state_dict_file

transformers = pytest.importorskip("transformers")

TINY = "vit_tiny_patch16_224"  # D 192, depth 12, 3 heads, patch 16


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may touch the network: the hub is offline and its download function raises."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import time

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError(f"network disabled in tests: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random tiny timm ViT saved as ``model.safetensors`` and the same weights as a transformers dir."""
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


def test_weights_from_directory_and_intermediate_layers(saved: tuple[Path, Path]) -> None:
    timm_file, _ = saved
    encoder = create_encoder(f"timm:{TINY}", weights=str(timm_file.parent), layers=(3, -1))
    out = encoder.encode(torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8))
    assert [t.shape for t in out.intermediate] == [(1, 192, 30, 45)] * 2  # short side 480
    torch.testing.assert_close(out.intermediate[1], out.features)


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


def test_offline_without_weights_fails_fast() -> None:
    with pytest.raises(RuntimeError, match=r"`timm/vit_small_patch8_224\.dino` `model\.safetensors`.*"
                                           r"encoder\.weights=<path"):
        create_encoder("dino_vits8")


def test_hf_offline_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)`facebook/dinov2-small`.*hf:<local dir>"):
        create_encoder("hf:facebook/dinov2-small")
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        create_encoder(f"hf:{tmp_path}")


def test_missing_local_weights() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_encoder("dino_vits16", weights="/nonexistent/model.safetensors")
    with pytest.raises(FileNotFoundError, match="expected one of"):
        load_state_dict_file(Path(__file__).parent)


def test_unknown_timm_model() -> None:
    with pytest.raises(ValueError, match="Unknown timm model `vit_nonsense`"):
        create_encoder("timm:vit_nonsense")


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
