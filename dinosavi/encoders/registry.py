"""Create a frozen encoder by name: the one place where encoder names and weights are resolved.

Names: ``efficientnet_lite0``, ``vit_tiny_random``, the DINO/DINOv2 ViTs in ``TIMM_VITS``,
``timm:<any timm ViT>``, ``random:<any timm ViT>`` (its architecture with seeded random weights, no
download: e.g. ``random:vit_small_patch8_224.dino``, the shape of DINO ViT-S/8) and
``hf:<hub repo id or local dir>`` (transformers ViT/DINOv2).
"""

from __future__ import annotations

import timm
import torch

from dinosavi.encoders.base import FrozenEncoder
from dinosavi.encoders.efficientnet import EfficientNetLite0
from dinosavi.encoders.hf import HFViT
from dinosavi.encoders.vit import TimmViT, TinyRandomViT
from dinosavi.encoders.weights import load_timm_weights

__all__ = ["ENCODERS", "TIMM_VITS", "VIT_TINY_RANDOM_SEED", "build_timm_vit", "create_encoder"]

TIMM_VITS: dict[str, str] = {
    "dino_vits8": "vit_small_patch8_224.dino",
    "dino_vits16": "vit_small_patch16_224.dino",
    "dino_vitb8": "vit_base_patch8_224.dino",
    "dino_vitb16": "vit_base_patch16_224.dino",
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
}
ENCODERS: tuple[str, ...] = (
    "efficientnet_lite0", "vit_tiny_random", *TIMM_VITS, "timm:<name>", "random:<timm name>", "hf:<repo id|dir>",
)
VIT_TINY_RANDOM_SEED = 0


def build_timm_vit(model_name: str) -> timm.models.vision_transformer.VisionTransformer:
    """The architecture of a timm ViT with random weights (``pretrained=False``, ``dynamic_img_size=True``).

    Raises:
        ValueError: the name is not a timm model, or not a ``VisionTransformer``.
    """
    if not timm.is_model(model_name):
        raise ValueError(f"Unknown timm model `{model_name}`; see timm.list_models('vit_*')")
    model = timm.create_model(model_name, pretrained=False, dynamic_img_size=True, num_classes=0)
    if not isinstance(model, timm.models.vision_transformer.VisionTransformer):
        raise ValueError(
            f"timm model `{model_name}` is a {type(model).__name__}, expected a VisionTransformer"
        )
    return model


def create_encoder(name: str, *, weights: str | None = None, stride: int = 8, layers: tuple[int, ...] = (),
                   precision: str = "fp32") -> FrozenEncoder:
    """Create a frozen encoder by name (``dinosavi.cli.build.build_encoder`` calls it with ``encoder.*``).

    Args:
        name: one of ``ENCODERS``; ``timm:<model name>`` or ``hf:<repo id or dir>`` for any timm / Hugging
            Face ViT.
        weights: a local weights file or folder for the timm ViTs (no network access then); their hub
            weights are downloaded when None. Not used by the other encoders.
        stride: feature stride of ``efficientnet_lite0`` (8 or 16); ViTs have their patch size.
        layers: ViT blocks whose normed outputs are returned as ``EncoderOutput.intermediate``.
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast for ViTs on CUDA.

    Raises:
        ValueError: an unknown name, or an argument the encoder does not take.
        RuntimeError: hub weights are needed but cannot be downloaded (the message names the file).
    """
    if name.startswith("random:"):
        if weights is not None:
            raise ValueError(f"`{name}` has seeded random weights; got weights={weights}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(VIT_TINY_RANDOM_SEED)
            model = build_timm_vit(name.removeprefix("random:"))
        return TimmViT(model, layers=layers, precision=precision)
    vit_name = TIMM_VITS.get(name) or (name.removeprefix("timm:") if name.startswith("timm:") else None)
    if vit_name is not None:
        model = load_timm_weights(build_timm_vit(vit_name), weights)
        return TimmViT(model, layers=layers, precision=precision)
    if name.startswith("hf:"):
        if weights is not None:
            raise ValueError(f"`{name}` loads its weights from the repo/dir itself; got weights={weights}")
        return HFViT(name.removeprefix("hf:"), layers=layers, precision=precision)
    if name in ("efficientnet_lite0", "vit_tiny_random") and weights is not None:
        raise ValueError(f"encoder `{name}` takes no weights path, got {weights}")
    if name == "efficientnet_lite0":
        if layers:
            raise ValueError(f"encoder `{name}` has no intermediate layers, got layers={layers}")
        return EfficientNetLite0(stride=stride)
    if name == "vit_tiny_random":
        return TinyRandomViT(patch_size=8, embed_dim=64, depth=2, num_heads=4, seed=VIT_TINY_RANDOM_SEED,
                             layers=layers, precision=precision)
    raise ValueError(f"Unknown encoder `{name}`; expected one of {list(ENCODERS)}")
