"""One process without torchrun: the collectives pass values through."""

from __future__ import annotations

import torch

from dinosavi.training.distributed import Distributed


def test_without_torchrun_there_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ddp = Distributed.from_env()
    assert (ddp.rank, ddp.world_size) == (0, 1)
    assert ddp.start(torch.device("cpu")) == torch.device("cpu")
    assert ddp.any(True, False) == (True, False)
    values = ddp.mean({"a": torch.tensor(2.0, requires_grad=True)})
    assert values["a"].item() == 2.0 and not values["a"].requires_grad
    ddp.close()


def test_torchrun_variables_are_read(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ddp = Distributed.from_env()
    assert (ddp.rank, ddp.local_rank, ddp.world_size) == (3, 1, 4)
