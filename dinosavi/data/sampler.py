"""A resumable epoch sampler: a seeded permutation per epoch that can start part-way through."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Indices of one epoch in the order fixed by ``(seed, epoch)``, starting at ``start``.

    Args:
        num_items: dataset length.
        seed: run seed.
        epoch: epoch number; each epoch has its own order.
        start: how many indices of this epoch were already consumed.
        shuffle: permute (True) or keep dataset order.
    """

    def __init__(self, num_items: int, seed: int, epoch: int = 0, start: int = 0, shuffle: bool = True) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = epoch
        self.start = start
        self.shuffle = shuffle

    def order(self) -> list[int]:
        """The full index order of this epoch."""
        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_items - self.start)
