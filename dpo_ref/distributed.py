"""Several processes (``torchrun`` or ``accelerate launch``): data parallelism with torch's DDP.

Each process takes every ``world``-th pair of the same global batch, DDP averages the gradients, and
so the update equals a one-process step on the whole global batch. Only rank 0 evaluates, writes files
and shows progress. The launchers set ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_processes(device: torch.device) -> Processes:
    """Join the process group the launcher describes (gloo on CPU, NCCL on CUDA); one process otherwise."""
    if launched_world_size() <= 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, procs: Processes, device: torch.device) -> torch.nn.Module:
    if procs.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # No buffer broadcast in forward: rank 0 alone runs evaluation forwards on the unwrapped model.
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def mean_over_processes(values: dict[str, torch.Tensor], procs: Processes) -> dict[str, torch.Tensor]:
    """Average logged metrics over processes (one collective per logging step, not per step)."""
    if procs.world == 1:
        return values
    names = sorted(values)
    stacked = torch.stack([values[n].float() for n in names])
    dist.all_reduce(stacked)
    return {n: v / procs.world for n, v in zip(names, stacked)}


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()
