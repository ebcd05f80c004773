"""Frozen backbones returning ``(B, D, h, w)`` patch features and ``(B, heads, h, w)`` CLS attention."""

from dinosavi.encoders.base import EncoderOutput, FrozenEncoder, Preprocess, ResizeRule
from dinosavi.encoders.efficientnet import EfficientNetLite0, efficientnet_lite0_classifier
from dinosavi.encoders.hf import HFViT
from dinosavi.encoders.registry import ENCODERS, TIMM_VITS, create_encoder
from dinosavi.encoders.vit import TimmViT, TinyRandomViT

__all__ = [
    "ENCODERS",
    "TIMM_VITS",
    "EfficientNetLite0",
    "EncoderOutput",
    "FrozenEncoder",
    "HFViT",
    "Preprocess",
    "ResizeRule",
    "TimmViT",
    "TinyRandomViT",
    "create_encoder",
    "efficientnet_lite0_classifier",
]
