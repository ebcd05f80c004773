"""The resumable epoch sampler: seeded orders per epoch, resuming part-way, data-parallel shards."""

from __future__ import annotations

import pytest
import torch

from dinosavi.data.sampler import EpochSampler


def test_order_is_a_permutation_fixed_by_seed_and_epoch():
    order = EpochSampler(20, seed=3, epoch=1).order()
    assert sorted(order) == list(range(20)) and order != list(range(20))
    assert EpochSampler(20, seed=3, epoch=1).order() == order  # the same in every process and run
    assert EpochSampler(20, seed=3, epoch=2).order() != order
    assert EpochSampler(20, seed=4, epoch=1).order() != order
    g = torch.Generator().manual_seed(3 * 1_000_003 + 1)  # the documented seeding, so old runs resume alike
    assert order == torch.randperm(20, generator=g).tolist()


def test_no_shuffle_keeps_dataset_order():
    assert list(EpochSampler(5, seed=0, shuffle=False)) == [0, 1, 2, 3, 4]
    assert list(EpochSampler(5, seed=0, shuffle=False, start=3)) == [3, 4]


@pytest.mark.parametrize("start", [0, 4, 11, 13])
def test_start_skips_the_consumed_indices(start):
    sampler = EpochSampler(11, seed=3, epoch=1, start=start)
    assert list(sampler) == sampler.order()[start:]
    assert len(sampler) == len(list(sampler)) == max(0, 11 - start)


def test_sampler_shards_make_the_global_batches():
    one = list(EpochSampler(11, seed=3, epoch=1))
    shards = [list(EpochSampler(11, seed=3, epoch=1, rank=r, world_size=2, batch_size=2)) for r in (0, 1)]
    assert [len(s) for s in shards] == [4, 4]  # only whole global batches of 4
    glued = [i for b in range(2) for r in (0, 1) for i in shards[r][2 * b : 2 * b + 2]]
    assert glued == one[:8]
    resumed = list(EpochSampler(11, seed=3, epoch=1, start=4, rank=1, world_size=2, batch_size=2))
    assert resumed == shards[1][2:]
    with pytest.raises(ValueError, match="whole number of global batches"):
        EpochSampler(11, seed=3, start=3, rank=0, world_size=2, batch_size=2)


@pytest.mark.parametrize(("world_size", "batch_size", "start"), [(2, 2, 0), (3, 1, 3), (2, 3, 6), (4, 3, 12)])
def test_len_counts_whole_global_batches(world_size, batch_size, start):
    for rank in range(world_size):
        sampler = EpochSampler(13, seed=0, start=start, rank=rank, world_size=world_size, batch_size=batch_size)
        assert len(sampler) == len(list(sampler)) == (13 - start) // (world_size * batch_size) * batch_size


def test_rank_outside_the_world_raises():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        EpochSampler(10, seed=0, rank=2, world_size=2)
