"""The reference policy π_ref, three ways, behind one method: ``logps(batch) -> (chosen, rejected)``.

- ``CopyReference``: a frozen deep copy of the starting policy. Simple; doubles the weights in memory.
- ``LoraReference``: the policy is a PEFT LoRA model; with its adapters disabled it *is* the base model,
  so π_ref costs no memory at all. Only right when training starts from fresh (zero-effect) adapters:
  an adapter that was already trained makes "adapters off" a different model from the starting policy.
- ``PrecomputedReference``: one pass over the data before training stores π_ref's log-probs per pair;
  training then needs no reference forward at all.

Each reads its batches with the run's ``Layout`` (``dpo_ref.layouts``), so its log-probs are summed or
averaged exactly as the policy's are.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterable, Protocol

import torch

from .layouts import ROWS, Layout


class Reference(Protocol):
    def logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]: ...


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode that autograd never updates."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class CopyReference:
    def __init__(self, policy: torch.nn.Module, layout: Layout = ROWS, frozen: torch.nn.Module | None = None):
        """``frozen``: the copy, when it was taken already (FSDP shards it with the policy first)."""
        self.model = frozen if frozen is not None else frozen_copy(policy)
        self.layout = layout

    @torch.no_grad()
    def logps(self, batch):
        out = self.layout.logps(self.model, batch)
        return out["chosen_logps"], out["rejected_logps"]


class LoraReference:
    def __init__(self, policy: torch.nn.Module, layout: Layout = ROWS):
        if not hasattr(policy, "disable_adapter"):
            raise TypeError("the 'lora' reference needs a PEFT model (wrap the policy with peft.get_peft_model)")
        self.policy = policy
        self.layout = layout

    @torch.no_grad()
    def logps(self, batch):
        with self.policy.disable_adapter():
            out = self.layout.logps(self.policy, batch)
        return out["chosen_logps"], out["rejected_logps"]


class PrecomputedReference:
    """Reference log-probs looked up by the pair's ``index`` (set by the collator)."""

    def __init__(self, chosen: torch.Tensor, rejected: torch.Tensor):
        self.chosen, self.rejected = chosen, rejected

    @classmethod
    @torch.no_grad()
    def from_batches(cls, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], n_pairs: int,
                     layout: Layout = ROWS, autocast: Callable | None = None) -> "PrecomputedReference":
        was_training = model.training
        model.eval()
        chosen = torch.full((n_pairs,), float("nan"))
        rejected = torch.full((n_pairs,), float("nan"))
        for batch in batches:
            with autocast() if autocast else contextlib.nullcontext():
                out = layout.logps(model, batch)
            index = batch["index"].cpu()
            chosen[index], rejected[index] = out["chosen_logps"].float().cpu(), out["rejected_logps"].float().cpu()
        model.train(was_training)
        if torch.isnan(chosen).any() or torch.isnan(rejected).any():
            raise RuntimeError("precomputing reference log-probs left some pairs without a value")
        return cls(chosen, rejected)

    def logps(self, batch):
        index = batch["index"]
        if self.chosen.device != index.device:  # once: indexing on the GPU needs no host synchronisation
            self.chosen, self.rejected = self.chosen.to(index.device), self.rejected.to(index.device)
        return self.chosen[index], self.rejected[index]


def make_reference(strategy: str, policy: torch.nn.Module, layout: Layout,
                   ordered_batches: Callable[[], Iterable[dict]], n_pairs: int,
                   frozen: torch.nn.Module | None = None, autocast: Callable | None = None) -> Reference:
    """π_ref for ``DPOConfig.reference``, built from the policy as training starts.

    ``ordered_batches()`` yields the training pairs once in order (only ``precomputed`` reads them).
    With LoRA, the precomputation runs on the base model: fresh adapters change nothing yet, but
    "adapters off" is exactly the model that training starts from.
    """
    if strategy == "copy":
        return CopyReference(policy, layout, frozen)
    if strategy == "lora":
        return LoraReference(policy, layout)
    with policy.disable_adapter() if hasattr(policy, "disable_adapter") else contextlib.nullcontext():
        return PrecomputedReference.from_batches(policy, ordered_batches(), n_pairs, layout, autocast)
