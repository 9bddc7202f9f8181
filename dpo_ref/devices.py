"""One process's device and number format: where tensors live, in which precision the
model runs, and the eval mode it is measured in."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode (no dropout) inside the block; its previous mode is
    restored after it, an error included."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    # under torchrun/accelerate each process takes its own GPU
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU; on CUDA bf16 where supported, else fp16 (a Colab T4 has no bf16)."""
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        return (torch.bfloat16
                if torch.cuda.is_bf16_supported(including_emulation=False)
                else torch.float16)
    return DTYPES[precision]


def autocast_for(device: torch.device,
                 dtype: torch.dtype) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of autocast contexts: matmuls in ``dtype``, weights stay fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def to_device(batch: dict[str, torch.Tensor],
              device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cuda":  # pinned host memory lets the copy overlap with compute
        return {k: v.pin_memory().to(device, non_blocking=True)
                for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}
