"""Checkpoints that resume a run exactly: trainable weights, optimizer, scheduler, loss
scaler, RNG states, step and data position. Tensors go into safetensors, the rest into
JSON; no pickle.

A checkpoint is written into a temporary folder and renamed to
``checkpoints/step-NNNNNNN`` only when complete, so a kill during a save never leaves a
half-written "latest" checkpoint behind. Loading reads and checks everything before
touching the model, so a damaged checkpoint is reported, not half-loaded.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .distributed import full_tensor, sharded_like

STATE_FILE, META_FILE = "state.safetensors", "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as a whole; nothing has been applied."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the optimizer updates (all of them, or LoRA's adapters), by
    name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _jsonable(value: Any) -> Any:
    """Keep what JSON can hold (schedulers keep callables in their state; those are
    rebuilt, not saved)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value if isinstance(value, (int, float, str, bool, type(None))) else None


def save_checkpoint(output_dir: Path | None, step: int, model, optimizer, scheduler,
                    scaler, extra_tensors: dict[str, torch.Tensor],
                    extra_meta: dict[str, Any], keep: int = 2,
                    write: bool = True, reference=None) -> Path | None:
    """Write a checkpoint. A sharded (FSDP) model is gathered first, so every process
    calls this and only the one with ``write`` (rank 0) writes; the checkpoint is the
    same as an unsharded run's. ``reference``: π_ref, whose ``state()`` (TR-DPO's
    moved weights; nothing for the others) is saved too."""
    def whole(t: torch.Tensor) -> torch.Tensor:
        return full_tensor(t).detach().cpu().contiguous()

    tensors = {f"model.{k}": whole(v) for k, v in trainable_state(model).items()}
    if reference is not None:
        tensors.update({f"reference.{k}": whole(v)
                        for k, v in reference.state().items()})
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = whole(value)
    if not write:
        return None
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    tensors.update({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()})
    meta = {
        "step": step,
        "optimizer_param_groups": opt["param_groups"],
        "scheduler": _jsonable(scheduler.state_dict()),
        "scaler": (_jsonable(scaler.state_dict())
                   if scaler is not None and scaler.is_enabled() else None),
        **extra_meta,
    }
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(tensors, tmp / STATE_FILE)
    (tmp / META_FILE).write_text(json.dumps(meta))
    # on disk before the rename makes the checkpoint visible
    for name in (STATE_FILE, META_FILE):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint (temporary folders of interrupted saves are
    ignored)."""
    found = sorted((Path(output_dir) / "checkpoints").glob("step-*"))
    return found[-1] if found else None


def load_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    for name in (META_FILE, STATE_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: {name} is missing")
    try:
        meta = json.loads((path / META_FILE).read_text())
        tensors = load_file(path / STATE_FILE)
        step = int(meta["step"])
    except Exception as err:
        # safetensors and json raise several types for corrupt files
        raise CheckpointError(f"checkpoint {path} is damaged: "
                              f"{type(err).__name__}: {err}") from None
    return Checkpoint(path, step, tensors, meta)


def restore(checkpoint: Checkpoint, model, optimizer, scheduler, scaler) -> None:
    """Apply a loaded checkpoint; every shape is checked before anything is changed.
    Each process of a sharded (FSDP) run loads the whole checkpoint and keeps its own
    shards."""
    params = trainable_state(model)
    saved = {k[len("model."):]: v for k, v in checkpoint.tensors.items()
             if k.startswith("model.")}
    if saved.keys() != params.keys():
        missing, unexpected = (sorted(params.keys() - saved.keys()),
                               sorted(saved.keys() - params.keys()))
        raise CheckpointError(f"checkpoint {checkpoint.path} does not match the model: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, p in params.items():
        if saved[name].shape != p.shape:
            raise CheckpointError(
                f"checkpoint {checkpoint.path}: {name} has shape "
                f"{tuple(saved[name].shape)}, the model {tuple(p.shape)}")
    by_index = list(params.values())  # the optimizer numbers parameters in this order
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in checkpoint.tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            param = by_index[int(index)]
            # AdamW's moments are sharded like their parameter; its step counter is
            # a plain scalar.
            state.setdefault(int(index), {})[name] = (
                sharded_like(value, param) if value.shape == param.shape else value)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(sharded_like(saved[name], p))
    optimizer.load_state_dict(
        {"state": state, "param_groups": checkpoint.meta["optimizer_param_groups"]})
    scheduler.load_state_dict({**scheduler.state_dict(),
                               **checkpoint.meta["scheduler"]})
    if scaler is not None and checkpoint.meta.get("scaler"):
        scaler.load_state_dict(checkpoint.meta["scaler"])
    torch.set_rng_state(checkpoint.tensors["rng.torch"])
    cuda_states = [checkpoint.tensors[k] for k in sorted(checkpoint.tensors)
                   if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)


def resume(output_dir: Path, model, optimizer, scheduler, scaler,
           reference=None) -> Checkpoint | None:
    """Load the latest checkpoint in ``output_dir`` into the run (None, and nothing
    changed, if none); with ``reference``, π_ref's saved state too."""
    latest = latest_checkpoint(output_dir)
    if latest is None:
        return None
    checkpoint = load_checkpoint(latest)
    # checked before anything is applied, like the model's tensors in restore()
    saved = {k[len("reference."):]: v for k, v in checkpoint.tensors.items()
             if k.startswith("reference.")}
    wanted = reference.state() if reference is not None else {}
    if saved.keys() != wanted.keys():
        raise CheckpointError(
            f"checkpoint {latest} holds {len(saved)} reference tensors, the run's "
            f"π_ref {len(wanted)}: it was written with another reference strategy "
            "(or before dpo_ref saved TR-DPO's moving reference)")
    for name, p in wanted.items():
        if saved[name].shape != p.shape:
            raise CheckpointError(
                f"checkpoint {latest}: reference.{name} has shape "
                f"{tuple(saved[name].shape)}, π_ref {tuple(p.shape)}")
    restore(checkpoint, model, optimizer, scheduler, scaler)
    if wanted:
        reference.load_state({k: sharded_like(v, wanted[k]) for k, v in saved.items()})
    return checkpoint
