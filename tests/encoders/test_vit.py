"""Timm ViT encoder: shapes, CLS attention against an eager computation, interpolation, determinism."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from dinosavi.encoders import TimmViT, TinyRandomViT, create_encoder
from dinosavi.encoders.vit import cls_attention


def _eager_cls_attention(encoder: TimmViT, images: Tensor) -> tuple[Tensor, Tensor]:
    """Tokens and the last block's full attention matrix from timm's non-fused (eager) attention."""
    eager = copy.deepcopy(encoder)
    blocks: Any = eager.model.blocks
    for block in blocks:
        block.attn.fused_attn = False
    probs: list[Tensor] = []
    handle = blocks[-1].attn.attn_drop.register_forward_hook(lambda _m, _i, out: probs.append(out))
    with torch.inference_mode():
        tokens = eager._run(images)
    handle.remove()
    return tokens, probs[0]  # (B, T, D), (B, heads, T, T)


@pytest.mark.parametrize("size", [(224, 224), (240, 320), (64, 48)])
@torch.inference_mode()
def test_shapes_and_attention_range(vit: TimmViT, size: tuple[int, int]) -> None:
    h, w = size[0] // 8, size[1] // 8
    out = vit(torch.randn(2, 3, *size))
    assert out.features.shape == (2, 64, h, w)
    assert out.cls_attention is not None and out.cls_attention.shape == (2, 4, h, w)
    assert (out.cls_attention >= 0).all()
    sums = out.cls_attention.sum(dim=(-2, -1))
    assert (sums <= 1 + 1e-6).all() and (sums > 0.5).all()  # only the CLS column is missing
    assert vit.feature_dim == 64 and vit.num_heads == 4 and vit.patch_size == 8


@pytest.mark.parametrize("size", [(224, 224), (240, 320)])
def test_matches_eager_attention(vit: TimmViT, size: tuple[int, int]) -> None:
    images = torch.randn(2, 3, *size)
    tokens, probs = _eager_cls_attention(vit, images)
    h, w = size[0] // 8, size[1] // 8
    with torch.inference_mode():
        out = vit(images)
    expected = probs[:, :, 0, 1:].reshape(2, 4, h, w)
    assert out.cls_attention is not None
    torch.testing.assert_close(out.cls_attention, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.features, tokens[:, 1:].transpose(1, 2).reshape(2, 64, h, w),
                               atol=1e-5, rtol=0)


def test_cls_attention_drops_prefix_tokens() -> None:
    q, k = torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4)  # CLS + 2 registers + 2x2 patches
    attn = cls_attention(q, k, 0.5, num_prefix_tokens=3, grid=(2, 2))
    full = ((q[:, :, :1] * 0.5) @ k.transpose(-2, -1)).softmax(-1)[:, :, 0]
    torch.testing.assert_close(attn.flatten(2), full[:, :, 3:])


@torch.inference_mode()
def test_position_embedding_is_interpolated(vit: TimmViT) -> None:
    """224 keeps the learned positions; 240x320 resamples them with plain bicubic (DINO, transformers)."""
    model: Any = vit.model
    pos = model.pos_embed  # (1, 1 + 28 * 28, 64)
    zeros = torch.zeros(1, 28, 28, 64)
    torch.testing.assert_close(vit._pos_embed(zeros), torch.cat([model.cls_token, zeros.flatten(1, 2)], 1)
                               + pos)
    grid = pos[:, 1:].reshape(1, 28, 28, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(30, 40), mode="bicubic", align_corners=False)
    tokens = vit._pos_embed(torch.zeros(1, 30, 40, 64))
    assert tokens.shape == (1, 1 + 30 * 40, 64)
    torch.testing.assert_close(tokens[:, 1:], expected.flatten(2).transpose(1, 2))
    torch.testing.assert_close(tokens[:, 0], model.cls_token[:, 0] + pos[:, 0])


def test_vit_tiny_random_is_deterministic(vit: TimmViT) -> None:
    torch.manual_seed(123)
    other = create_encoder("vit_tiny_random")
    assert all(torch.equal(a, b) for a, b in zip(vit.state_dict().values(), other.state_dict().values()))
    state = torch.random.get_rng_state()
    TinyRandomViT(seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    pos_a, pos_b = TinyRandomViT(seed=5).state_dict()["model.pos_embed"], vit.state_dict()["model.pos_embed"]
    assert not torch.equal(pos_a, pos_b)


def test_intermediate_layers() -> None:
    encoder = TinyRandomViT(seed=0, layers=(0, -1))
    out = encoder.encode(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), batch_size=1)
    assert len(out.intermediate) == 2 and out.intermediate[0].shape == (2, 64, 60, 60)
    torch.testing.assert_close(out.intermediate[1], out.features)  # the last block, normed


def test_rejects_bad_input(vit: TimmViT) -> None:
    with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
        vit(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="layer index 5 out of range"):
        TinyRandomViT(layers=(5,))
    with pytest.raises(ValueError, match="Unknown precision `fp8`"):
        TinyRandomViT(precision="fp8")


def test_unknown_encoder() -> None:
    with pytest.raises(ValueError, match=r"Unknown encoder `resnet`; expected one of .*efficientnet_lite0"):
        create_encoder("resnet")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cuda(precision: str) -> None:
    full = TinyRandomViT(seed=0).cuda()
    half = TinyRandomViT(seed=0, precision=precision).cuda()
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    a, b = full.encode(frames), half.encode(frames)
    assert b.features.dtype == torch.float32
    torch.testing.assert_close(a.features, b.features, atol=0.1, rtol=0.05)
    assert a.cls_attention is not None and b.cls_attention is not None
    torch.testing.assert_close(a.cls_attention, b.cls_attention, atol=1e-3, rtol=0.05)
