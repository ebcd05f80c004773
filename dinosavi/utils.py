"""Small helpers shared by the modes: seeding."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

__all__ = ["seed_everything"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number, and log it."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    log.info("seed=%d", seed)
