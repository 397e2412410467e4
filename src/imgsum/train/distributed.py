"""Training in several processes with ``torch.distributed``: ``torchrun --nproc-per-node N -m imgsum train ...``.

torchrun starts N processes and tells each its rank through the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``); without them training runs in one process, as before. Each step's batch of
images is split between the ranks (:func:`rank_share`), DDP averages the gradients, and
:func:`global_mean` makes the loss each rank back-propagates a share of the whole batch's mean, so that
N ranks × ``batch_images`` take the same step as one process with N × ``batch_images``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: one of ``size``, ``rank`` 0 writes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # this process's index on its machine: its GPU

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates and writes metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> "World":
        """The world torchrun describes in the environment; one process when it describes none."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, wanted: str) -> torch.device:
        """``wanted`` (auto, cpu, cuda) as this rank's device: its own GPU (by local rank) on CUDA."""
        cuda = torch.cuda.is_available() if wanted == "auto" else wanted.startswith("cuda")
        if not cuda:
            return torch.device("cpu")
        if self.distributed:
            return torch.device("cuda", self.local_rank)
        return torch.device("cuda" if wanted == "auto" else wanted)

    def start(self, device: torch.device) -> None:
        """Joins the process group: NCCL between GPUs, gloo on CPUs."""
        if not self.distributed or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=self.rank, world_size=self.size)
        # A parameter broadcast over the batch (the image token) gets a strided gradient: harmless, and said
        # once per process per run by DDP's reducer.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        logger.info("rank %d of %d joined (%s)", self.rank, self.size, backend)

    def stop(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the ranks (a copy; the same on every rank)."""
        value = value.detach().clone()
        if self.distributed:
            dist.all_reduce(value)
        return value

    def anyone(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any (a stop request reaches all ranks at the same step)."""
        if not self.distributed:
            return flag
        return bool(self.total(torch.tensor([float(flag)], device=device)).item())


def rank_share(batch: np.ndarray, world: World) -> np.ndarray:
    """This rank's images of a step's ``batch`` (image indices, the same list on every rank).

    The batch is cut into ``world.size`` near-equal consecutive parts; a batch smaller than the world (an
    epoch's last) is topped up from its own start, so that every rank has images to step on.
    """
    if len(batch) < world.size:
        batch = np.resize(batch, world.size)
    return np.array_split(batch, world.size)[world.rank]


def global_mean(loss_sum: torch.Tensor, count: torch.Tensor, world: World) -> torch.Tensor:
    """The loss this rank back-propagates: its summed loss over the whole batch's ``count`` (all ranks'),
    times the world size, because DDP averages the ranks' gradients. The averaged gradient is the
    gradient of the whole batch's mean, however its images were shared."""
    return loss_sum * world.size / world.total(count).clamp(min=1)
