"""The frozen-encoder interface: resize rules (hand-computed sizes), preprocessing (normalisation, crop, resize),
frozen modules, batched encoding, and the errors that name the bad value."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinosavi.encoders import TimmViT
from dinosavi.encoders.base import EncoderOutput, FrozenEncoder, Preprocess, ResizeRule


class _Pool(FrozenEncoder):
    """2x2 average pooling: features ``(B, 3, H/2, W/2)`` in fp16, one intermediate layer, no CLS token."""

    feature_dim, patch_size, num_heads = 3, 2, None
    preprocess = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    default_resize = ResizeRule(multiple_of=2)

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[int] = []

    def forward(self, images: Tensor) -> EncoderOutput:
        self.calls.append(len(images))
        features = F.avg_pool2d(images * self.scale, 2)
        return EncoderOutput(features.half(), None, (features * 2,))


def test_frozen_and_encode_uint8(vit: TimmViT) -> None:
    vit.train()
    assert not any(m.training for m in vit.modules())
    assert not any(p.requires_grad for p in vit.parameters())
    frames = torch.randint(0, 256, (3, 3, 120, 200), dtype=torch.uint8)
    out = vit.encode(frames, batch_size=2)  # default rule: short side 480
    assert out.features.shape == (3, 64, 60, 100)
    assert out.cls_attention is not None and out.cls_attention.shape == (3, 4, 60, 100)
    with torch.inference_mode():
        single = vit(vit.preprocess(frames[2:], vit.default_resize))
    torch.testing.assert_close(out.features[2:], single.features, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("rule", "size", "expected"), [
    (ResizeRule(short_side=480, multiple_of=64), (480, 854), (480, 832)),  # DINO's DAVIS evaluation
    (ResizeRule(short_side=480, multiple_of=64), (854, 480), (832, 480)),  # portrait
    (ResizeRule(short_side=480), (360, 640), (480, 853)),  # 853.33 floored
    (ResizeRule(short_side=224, multiple_of=8), (480, 960), (224, 448)),  # 447.99... is 448
    (ResizeRule(short_side=64, multiple_of=14), (100, 100), (64, 56)),  # the short side exactly, only the long floored
    (ResizeRule(multiple_of=8), (480, 854), (480, 848)),  # native: the original DINOSAVi's evaluation
    (ResizeRule(), (37, 53), (37, 53)),
    (ResizeRule(size=(64, 96)), (480, 854), (64, 96)),
])
def test_target_size_hand_computed(rule: ResizeRule, size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert rule.target_size(*size) == expected


def test_only_a_rule_without_size_or_short_side_is_native() -> None:
    assert ResizeRule().native and ResizeRule(multiple_of=8).native
    assert not ResizeRule(short_side=8).native and not ResizeRule(size=(8, 8)).native


def test_resize_rule_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"at most one of size or short_side, got ResizeRule\(size=\(8, 8\)"):
        ResizeRule(size=(8, 8), short_side=8)
    with pytest.raises(ValueError, match="multiple_of must be >= 1, got 0"):
        ResizeRule(multiple_of=0)


def test_preprocess_normalises_hand_computed() -> None:
    preprocess = Preprocess(mean=(0.5, 0.0, 1.0), std=(0.25, 0.5, 2.0))
    frames = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    frames[:, :, 0, 0] = 0
    x = preprocess(frames, ResizeRule())
    assert x.dtype == torch.float32 and x.shape == (1, 3, 4, 4)
    assert x[0, :, 1, 1].tolist() == [2.0, 2.0, 0.0] and x[0, :, 0, 0].tolist() == [-2.0, 0.0, -0.5]


def test_preprocess_crops_natively_and_resizes_otherwise() -> None:
    identity = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="nearest")
    frames = torch.randint(0, 256, (2, 3, 10, 13), dtype=torch.uint8)
    scaled = frames.float() / 255
    torch.testing.assert_close(identity(frames, ResizeRule(multiple_of=4)), scaled[..., :8, :12], rtol=0, atol=0)
    halved = identity(frames[..., :8, :12], ResizeRule(size=(4, 6)))  # nearest: every second pixel
    torch.testing.assert_close(halved, scaled[..., :8:2, :12:2], rtol=0, atol=0)
    smooth = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(frames, ResizeRule(size=(5, 6)))
    assert smooth.shape == (2, 3, 5, 6) and smooth.min() >= 0 and smooth.max() <= 1


@pytest.mark.parametrize("frames", [torch.zeros(2, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8),
                                    torch.zeros(2, 4, 8, 8, dtype=torch.uint8)])
def test_preprocess_names_what_it_got(frames: Tensor) -> None:
    got = f"expected (B, 3, H, W) uint8 frames, got {tuple(frames.shape)} {frames.dtype}"
    with pytest.raises(ValueError, match=re.escape(got)):
        Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(frames, ResizeRule())


def test_encode_batches_and_returns_float32() -> None:
    encoder = _Pool().freeze()
    frames = torch.randint(0, 256, (5, 3, 6, 9), dtype=torch.uint8)
    out = encoder.encode(frames, batch_size=2)  # default rule: crop to a multiple of 2, 6x8
    assert encoder.calls == [2, 2, 1]
    assert out.features.dtype == torch.float32 and out.features.shape == (5, 3, 3, 4) and out.cls_attention is None
    expected = F.avg_pool2d(frames[..., :6, :8].float() / 255, 2)
    torch.testing.assert_close(out.features, expected, atol=1e-3, rtol=0)  # fp16 from the encoder
    (intermediate,) = out.intermediate
    torch.testing.assert_close(intermediate, expected * 2)
    assert encoder.encode(frames, ResizeRule(size=(4, 4))).features.shape == (5, 3, 2, 2)
    assert encoder.grid_size(5, 7) == (3, 4)


def test_frozen_encoders_never_train() -> None:
    encoder = _Pool()
    assert encoder.freeze() is encoder and not encoder.scale.requires_grad
    assert encoder.train() is encoder and not encoder.training
    with pytest.raises(NotImplementedError):
        FrozenEncoder()(torch.zeros(1, 3, 2, 2))
