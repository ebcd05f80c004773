"""This process's place in a ``torchrun`` launch, and the two collectives training needs.

``torchrun --nproc_per_node=N -m dinosavi mode=train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :meth:`Distributed.from_env` reads them (``world_size`` 1 without a launch) and
:meth:`Distributed.start` joins the process group (NCCL on CUDA, gloo on CPU) and picks this process's
device. Everything here is a no-op for a single process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Distributed"]

log = logging.getLogger(__name__)


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` launch (``world_size`` 1 without one)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls) -> Distributed:
        """Read ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set by torchrun."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)

    def start(self, device: torch.device) -> torch.device:
        """Join the process group when launched with several processes; returns this process's device
        (``cuda:<local rank>`` for a multi-process CUDA launch, else ``device``)."""
        if self.world_size > 1 and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            log.info("process %d of %d (%s)", self.rank, self.world_size, dist.get_backend())
        return device

    def close(self) -> None:
        """Leave the process group (when one was joined)."""
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Whether each flag is set in any process (one all-reduce under torchrun), so all act at one step."""
        if self.world_size == 1:
            return flags
        values = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def mean(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Scalars averaged over the processes (one all-reduce), detached, as float32."""
        stacked = torch.stack([v.detach().float() for v in values.values()])
        if self.world_size > 1:
            dist.all_reduce(stacked)
            stacked /= self.world_size
        return dict(zip(values, stacked))
