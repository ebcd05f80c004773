"""The resumable epoch sampler: seeded orders per epoch, resuming part-way, data-parallel shards."""

from __future__ import annotations

import pytest

from dinosavi.data.sampler import EpochSampler


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
