"""What the feature-store tests share: the tiny random ViT and the training and evaluation resolutions."""

from __future__ import annotations

import pytest

from dinosavi.encoders.base import FrozenEncoder, ResizeRule
from dinosavi.encoders.registry import create_encoder
from dinosavi.features.space import Resolution

TRAIN = Resolution(ResizeRule(size=(64, 64)), presize=True)
EVAL = Resolution(ResizeRule(short_side=64, multiple_of=8))


@pytest.fixture(scope="module")
def vit() -> FrozenEncoder:
    return create_encoder("vit_tiny_random").freeze()
