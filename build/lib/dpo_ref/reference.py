"""The reference policy π_ref, three ways, behind one method: ``logps(batch) -> (chosen, rejected)``.

- ``CopyReference``: a frozen deep copy of the starting policy. Simple; doubles the weights in memory.
- ``LoraReference``: the policy is a PEFT LoRA model; with its adapters disabled it *is* the base model,
  so π_ref costs no memory at all. Only right when training starts from fresh (zero-effect) adapters:
  an adapter that was already trained makes "adapters off" a different model from the starting policy.
- ``PrecomputedReference``: one pass over the data before training stores π_ref's log-probs per pair;
  training then needs no reference forward at all.
"""

from __future__ import annotations

import copy
from typing import Iterable, Protocol

import torch

from .logprobs import pair_logps


class Reference(Protocol):
    def logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]: ...


class CopyReference:
    def __init__(self, policy: torch.nn.Module, length_normalize: bool = False):
        self.model = copy.deepcopy(policy).eval().requires_grad_(False)
        self.length_normalize = length_normalize

    @torch.no_grad()
    def logps(self, batch):
        out = pair_logps(self.model, batch, self.length_normalize)
        return out["chosen_logps"], out["rejected_logps"]


class LoraReference:
    def __init__(self, policy: torch.nn.Module, length_normalize: bool = False):
        if not hasattr(policy, "disable_adapter"):
            raise TypeError("the 'lora' reference needs a PEFT model (wrap the policy with peft.get_peft_model)")
        self.policy = policy
        self.length_normalize = length_normalize

    @torch.no_grad()
    def logps(self, batch):
        with self.policy.disable_adapter():
            out = pair_logps(self.policy, batch, self.length_normalize)
        return out["chosen_logps"], out["rejected_logps"]


class PrecomputedReference:
    """Reference log-probs looked up by the pair's ``index`` (set by the collator)."""

    def __init__(self, chosen: torch.Tensor, rejected: torch.Tensor):
        self.chosen, self.rejected = chosen, rejected

    @classmethod
    @torch.no_grad()
    def from_batches(cls, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], n_pairs: int,
                     length_normalize: bool = False, autocast=None) -> "PrecomputedReference":
        was_training = model.training
        model.eval()
        chosen = torch.full((n_pairs,), float("nan"))
        rejected = torch.full((n_pairs,), float("nan"))
        for batch in batches:
            with autocast() if autocast else torch.autocast("cpu", enabled=False):
                out = pair_logps(model, batch, length_normalize)
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
