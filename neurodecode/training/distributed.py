"""DistributedDataParallel plumbing: who am I, the process group, reductions, gathered objects.

``torchrun --nproc_per_node=N script.py`` starts N processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`setup` reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Topology:
    """This process's place among the training processes (rank 0 of 1 without DDP)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def local_rank() -> int:
    """This process's index on its node: ``LOCAL_RANK`` (torchrun sets it), else the global rank modulo
    the node's GPUs when a process group is up, else 0. It picks the GPU (``cuda:local_rank``)."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() % max(1, torch.cuda.device_count())
    return 0


def setup(mode, device_type: str) -> Topology:
    """The topology of this run, initialising the default process group if needed.

    Parameters
    ----------
    mode : bool or "auto"
        False: one process, whatever the environment. "auto"/True: an initialised process group
        is used as it is; otherwise ``WORLD_SIZE > 1`` in the environment initialises one (NCCL for
        CUDA, gloo for the CPU) from ``MASTER_ADDR``/``MASTER_PORT``. True without either is an error.
    device_type : str
        "cuda" or "cpu": picks the backend of a group this function creates.
    """
    if mode is False or not dist.is_available():
        if mode is True:
            raise RuntimeError("distributed=True but torch.distributed is not available in this build")
        return Topology()
    if not dist.is_initialized():
        if env_world_size() <= 1:
            if mode is True:
                raise RuntimeError("distributed=True but no process group is initialised and WORLD_SIZE is not > 1: "
                                   "launch with torchrun --nproc_per_node=N")
            return Topology()
        # The group lives as long as the process: a second fit in the same launch reuses it.
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Topology(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank())


def all_reduce_sum(values: torch.Tensor, topology: Topology) -> torch.Tensor:
    """Elementwise sum of ``values`` over the processes (``values`` itself in one process)."""
    if topology.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj, topology: Topology) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
    if not topology.active:
        return [obj]
    out = [None] * topology.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(topology: Topology) -> None:
    if topology.active:
        dist.barrier()
