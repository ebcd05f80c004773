"""A resumable epoch sampler: a seeded permutation per epoch that can start part-way through.

Under data parallelism every process draws the same permutation and takes its shard of each global
batch: the global batch ``i`` is ``order[i*G : (i+1)*G]`` with ``G = world_size * batch_size``, and
rank ``r`` takes its ``r``-th contiguous block of ``batch_size``, so the global batches are the same as
in one process with batch size ``G``.
"""

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
        start: how many indices of this epoch were already consumed (by all processes together).
        shuffle: permute (True) or keep dataset order.
        rank: this process's index among ``world_size`` data-parallel processes.
        world_size: data-parallel processes; with more than one, only full global batches are drawn.
        batch_size: per-process batch size (only used with ``world_size > 1``).
    """

    def __init__(
        self,
        num_items: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if world_size > 1 and start % (world_size * batch_size):
            raise ValueError(f"start={start} is not a whole number of global batches of {world_size * batch_size}")
        self.num_items = num_items
        self.seed = seed
        self.epoch = epoch
        self.start = start
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.batch_size = batch_size

    def order(self) -> list[int]:
        """The full index order of this epoch (the same in every process)."""
        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        if self.world_size == 1:
            return iter(order[self.start :])
        G, b = self.world_size * self.batch_size, self.batch_size
        shard: list[int] = []
        for first in range(self.start, self.num_items - G + 1, G):
            shard += order[first + self.rank * b : first + (self.rank + 1) * b]
        return iter(shard)

    def __len__(self) -> int:
        if self.world_size == 1:
            return max(0, self.num_items - self.start)
        G = self.world_size * self.batch_size
        return max(0, (self.num_items - self.start) // G) * self.batch_size
