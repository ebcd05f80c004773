"""Small helpers shared by the modes: seeding."""

from __future__ import annotations

import logging
import random

import numpy as np

__all__ = ["seed_everything"]

log = logging.getLogger(__name__)


def seed_everything(seed: int, torch_rng: bool = True) -> None:
    """Seed Python, NumPy and (with ``torch_rng``) torch on all devices from one number, and log it.

    ``torch_rng=False`` leaves torch unimported, for modes that draw no random numbers from it.
    """
    random.seed(seed)
    np.random.seed(seed)
    if torch_rng:
        import torch

        torch.manual_seed(seed)
    log.info("seed=%d%s", seed, "" if torch_rng else " (python, numpy; torch not used)")
