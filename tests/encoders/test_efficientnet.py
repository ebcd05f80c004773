"""EfficientNet-Lite0: weight mapping, ImageNet predictions on DAVIS frames, strided features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from dinosavi.encoders import EfficientNetLite0, ResizeRule, create_encoder, efficientnet_lite0_classifier
from dinosavi.encoders.efficientnet import efficientnet_lite0_weights_path, map_lukemelas_state_dict

BLACK_SWAN = 100
CAR_CLASSES = {436, 468, 479, 511, 581, 627, 656, 661, 717, 751, 817}  # wagon, cab, wheel, ..., sports car


@pytest.fixture(scope="module")
def lukemelas() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return efficientnet_lite0_classifier()


@pytest.fixture(scope="module")
def encoder8() -> EfficientNetLite0:
    return EfficientNetLite0(stride=8)


def test_mapping_covers_every_key(lukemelas: dict[str, torch.Tensor]) -> None:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = map_lukemelas_state_dict(lukemelas, model)
    target = model.state_dict()
    assert list(mapped) == list(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    model.load_state_dict(mapped, strict=True)


def test_mapping_rejects_wrong_shape_and_count(lukemelas: dict[str, torch.Tensor]) -> None:
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    corrupted = dict(lukemelas)
    corrupted["_blocks.3._project_conv.weight"] = torch.zeros(7, 7, 1, 1)
    expected = r"`_blocks\.3\._project_conv\.weight` \(7, 7, 1, 1\) onto `blocks\.2\.0\.conv_pwl\.weight`"
    with pytest.raises(ValueError, match=expected):
        map_lukemelas_state_dict(corrupted, model)
    shorter = dict(list(lukemelas.items())[:-1])
    with pytest.raises(ValueError, match=r"295 source keys vs\. 296"):
        map_lukemelas_state_dict(shorter, model)


def _center_crop(path: Path) -> torch.Tensor:
    """TF EfficientNet-lite eval preprocessing: short side 256 (bicubic), centre crop 224, mean=std=0.5."""
    img = Image.open(path).convert("RGB")
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None]
    return (x - 0.5) / 0.5


@torch.inference_mode()
def test_predicts_black_swan_top1(classifier: torch.nn.Module, davis_root: Path) -> None:
    logits = classifier(_center_crop(davis_root / "JPEGImages/480p/blackswan/00000.jpg"))
    assert logits.shape == (1, 1000)
    assert logits.argmax(-1).item() == BLACK_SWAN
    assert logits.softmax(-1)[0, BLACK_SWAN] > 0.5


@torch.inference_mode()
def test_predicts_a_car_in_top5(classifier: torch.nn.Module, davis_root: Path) -> None:
    logits = classifier(_center_crop(davis_root / "JPEGImages/480p/car-shadow/00000.jpg"))
    top5 = set(logits.topk(5).indices[0].tolist())
    assert top5 & CAR_CLASSES, top5


def test_preprocess_travels_with_weights(encoder8: EfficientNetLite0) -> None:
    assert encoder8.preprocess.mean == (0.5, 0.5, 0.5) and encoder8.preprocess.std == (0.5, 0.5, 0.5)
    assert encoder8.default_resize == ResizeRule(short_side=224, multiple_of=8)
    assert encoder8.num_heads is None and encoder8.feature_dim == 320


@pytest.mark.parametrize(("stride", "size", "grid"), [
    (8, (224, 224), (28, 28)), (16, (224, 224), (14, 14)),
    (8, (240, 320), (30, 40)), (16, (240, 320), (15, 20)),
])
@torch.inference_mode()
def test_feature_shapes(stride: int, size: tuple[int, int], grid: tuple[int, int]) -> None:
    encoder = create_encoder("efficientnet_lite0", stride=stride)
    out = encoder(torch.randn(2, 3, *size))
    assert out.features.shape == (2, 320, *grid)
    assert out.cls_attention is None
    assert encoder.grid_size(*size) == grid


def test_stride8_and_stride16_share_weights_not_features(encoder8: EfficientNetLite0) -> None:
    encoder16 = EfficientNetLite0(stride=16)
    for (k8, p8), (k16, p16) in zip(encoder8.state_dict().items(), encoder16.state_dict().items()):
        assert k8 == k16 and torch.equal(p8, p16)


def test_frozen(encoder8: EfficientNetLite0) -> None:
    encoder8.train()
    assert not encoder8.training and not any(m.training for m in encoder8.modules())
    assert not any(p.requires_grad for p in encoder8.parameters())
    x = torch.randn(1, 3, 64, 64)
    assert not encoder8(x).features.requires_grad


def test_encode_uint8(encoder8: EfficientNetLite0, davis_root: Path) -> None:
    frame = np.array(Image.open(davis_root / "JPEGImages/480p/blackswan/00000.jpg").convert("RGB"))
    frames = torch.from_numpy(frame).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)  # (3, 3, 480, 854)
    out = encoder8.encode(frames, batch_size=2)
    assert out.features.shape == (3, 320, 28, 49)  # 480x854 -> 224x392 (long side floored) at stride 8
    assert out.features.dtype == torch.float32 and torch.isfinite(out.features).all()
    torch.testing.assert_close(out.features[0], out.features[2])


def test_rejects_bad_stride() -> None:
    with pytest.raises(ValueError, match="stride must be 8 or 16, got 32"):
        EfficientNetLite0(stride=32)
