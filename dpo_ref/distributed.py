"""Several processes (``torchrun`` or ``accelerate launch``): data parallelism,
replicated or sharded.

Each process takes every ``world``-th pair of the same global batch and the gradients
are averaged, so the update equals a one-process step on the whole global batch. Two
ways to hold the model:

- DDP (default): every process holds the whole model, gradients and optimizer state.
- FSDP (``fsdp=True``, or an Accelerate FSDP config): torch's ``fully_shard`` (FSDP2)
  splits weights, gradients and AdamW state of each decoder layer over the processes; a
  layer's weights are gathered just for its forward and backward. Every process must
  then run every forward, evaluation included.

Only rank 0 writes files and shows progress. The launchers set ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import ConfigError, DPOConfig


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


def launched_rank() -> int:
    """This process's rank as the launcher set it, before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def init_processes(device: torch.device) -> Processes:
    """Join the process group the launcher describes (gloo on CPU, NCCL on CUDA); one
    process otherwise."""
    if launched_world_size() <= 1:
        return Processes()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the device mesh use the current device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", "0")))


def data_parallel(model: torch.nn.Module, procs: Processes,
                  device: torch.device) -> torch.nn.Module:
    """The model that the training step runs: DDP over several processes (gradients
    averaged in backward), the model itself in one."""
    if procs.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # No buffer broadcast in forward: rank 0 alone runs evaluation forwards on the
    # unwrapped model.
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False)


# ----------------------------------------------------------- what the launcher asks for


def from_launcher(config: DPOConfig) -> DPOConfig:
    """``config`` as the launcher runs it: an ``accelerate launch`` FSDP config turns
    FSDP on (with its resharding and activation checkpointing), and the global batch
    must split over the processes."""
    try:
        launcher_fsdp = accelerate_fsdp_settings()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if launcher_fsdp:
        config = dataclasses.replace(
            config, fsdp=True,
            fsdp_reshard_after_forward=launcher_fsdp["reshard_after_forward"],
            gradient_checkpointing=(config.gradient_checkpointing
                                    or launcher_fsdp["activation_checkpointing"]))
    world = launched_world_size()
    if config.batch_size % world:
        raise ConfigError(f"batch_size {config.batch_size} (the global batch) must be "
                          f"a multiple of the {world} processes")
    if config.fsdp and world < 2:
        raise ConfigError("fsdp shards the model over several processes: launch with "
                          "torchrun --nproc_per_node N or accelerate launch "
                          "--num_processes N (N >= 2), or drop fsdp")
    return config


def accelerate_fsdp_settings() -> dict[str, bool] | None:
    """What an ``accelerate launch`` with an FSDP config asks for (it passes its
    settings as variables)."""
    env = os.environ
    if env.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return None
    if env.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true":
        raise ValueError("the Accelerate config asks for fsdp_offload_params: true; "
                         "dpo_ref does not offload to the CPU: set it to false")
    strategy = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
    if strategy not in ("FULL_SHARD", "1", "SHARD_GRAD_OP", "2"):
        raise ValueError("the Accelerate config asks for fsdp_sharding_strategy "
                         f"{strategy}; dpo_ref shards with FULL_SHARD or SHARD_GRAD_OP")
    reshard = (env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true"
               and strategy in ("FULL_SHARD", "1"))
    return {"reshard_after_forward": reshard,
            "activation_checkpointing": (
                env.get("FSDP_ACTIVATION_CHECKPOINTING", "false").lower() == "true")}


# ----------------------------------------------------------- FSDP


def shard(model: torch.nn.Module, device: torch.device,
          reshard_after_forward: bool = True) -> torch.nn.Module:
    """FSDP2 in place: each decoder layer is one unit (gathered for its own forward),
    the rest is the root's."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    layer_classes = set(getattr(_base(model), "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise ValueError("fsdp: cannot find the decoder layers of "
                         f"{type(_base(model)).__name__} (no _no_split_modules)")
    for layer in layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)


def _base(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a shard (a collective: every process must call it), or
    ``t`` itself."""
    from torch.distributed.tensor import DTensor

    return t.detach().full_tensor() if isinstance(t, DTensor) else t


def sharded_like(full: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``full`` split the way ``target`` is sharded (a collective), or ``full`` itself
    for a plain tensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(target, DTensor):
        return full
    return distribute_tensor(full.to(target.device, target.dtype), target.device_mesh,
                             target.placements)


def gathered_copy(model: torch.nn.Module, procs: Processes) -> torch.nn.Module | None:
    """An unsharded copy of a sharded model for saving, on rank 0's CPU (None
    elsewhere); every process must call it.

    Rebuilt from the config on the meta device (so nothing is allocated twice) and
    filled with the gathered full state; a PEFT model gets the same adapters, so
    ``save`` can merge them as usual. It is for ``save_pretrained`` only: buffers that
    are not saved (rotary frequencies) stay on the meta device.
    """
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         get_model_state_dict)
    from transformers import AutoModelForCausalLM

    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not procs.is_main:
        return None
    with torch.device("meta"):
        copy = AutoModelForCausalLM.from_config(_base(model).config)
    if hasattr(model, "peft_config"):
        from peft import get_peft_model

        copy = get_peft_model(copy, model.peft_config["default"])
    copy.load_state_dict(state, assign=True)
    _base(copy).tie_weights()
    return copy


# ----------------------------------------------------------- collectives


def mean_over_processes(values: dict[str, torch.Tensor],
                        procs: Processes) -> dict[str, torch.Tensor]:
    """Average metric sums over processes (at logging steps and checkpoints, never every
    step)."""
    if procs.world == 1:
        return values
    names = sorted(values)
    stacked = torch.stack([values[n].float() for n in names])
    dist.all_reduce(stacked)
    return {n: v / procs.world for n, v in zip(names, stacked)}


def all_true(flag: torch.Tensor, procs: Processes) -> bool:
    """True when ``flag`` holds on every process (so all of them stop together, or
    none)."""
    if procs.world > 1:
        flag = flag.to(torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()
