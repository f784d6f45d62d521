"""Where a training process runs: its device, and its place in a torchrun job.

``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``) makes ``hvq train`` a DistributedDataParallel job: one process
per GPU (NCCL) or per CPU worker (gloo).  Without those variables the run is a
single process and nothing here touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hvq.bitstream.errors import HvqConfigError


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder and runs validation."""
        return self.rank == 0


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; a device this machine lacks is ``HvqConfigError``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise HvqConfigError("device cuda: no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise HvqConfigError(f"unknown device {name!r} (auto, cpu or cuda)")
    return torch.device("cpu")


def join(device_name: str) -> Placement:
    """Join the torchrun job described by the environment, if any, and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Placement(0, 1, choose_device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name, local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Placement(dist.get_rank(), dist.get_world_size(), device)


def leave(placement: Placement, finished: bool = False) -> None:
    """Tear the process group down; after a finished run, once every rank is done with it.

    The barrier keeps one rank from destroying its gloo group while another
    still has work in flight: without it a rank now and then aborted at exit
    ("terminate called without an active exception", SIGABRT) after a run
    that had finished.  A rank that failed leaves at once: the others may
    never reach the barrier.
    """
    if placement.world_size > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def check_in_sync(module: torch.nn.Module, placement: Placement) -> None:
    """Raise if the ranks' weights and codebooks have drifted apart (they must be bit-identical).

    A RuntimeError, not an ``HvqError``: no input causes it, only a bug.
    """
    if placement.world_size == 1:
        return
    digest = torch.stack([t.detach().double().sum() for t in module.state_dict().values()])
    gathered = [torch.empty_like(digest) for _ in range(placement.world_size)]
    dist.all_gather(gathered, digest)
    if not all(torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError("DDP ranks hold different weights: the run is out of sync")
