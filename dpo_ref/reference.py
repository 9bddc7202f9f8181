"""The reference policy π_ref, five ways, behind one method:
``logps(batch) -> (chosen, rejected)``.

- ``CopyReference``: a frozen deep copy of the starting policy. Simple; doubles the
  weights in memory.
- ``LoraReference``: the policy is a PEFT LoRA model; with its adapters disabled it *is*
  the base model, so π_ref costs no memory at all. Only right when training starts from
  fresh (zero-effect) adapters: an adapter that was already trained makes "adapters off"
  a different model from the starting policy.
- ``PrecomputedReference``: one pass over the data before training stores π_ref's
  log-probs per pair; training then needs no reference forward at all.
- ``TrustRegionReference`` (``tr``): TR-DPO's frozen copy that moves toward the policy
  every τ steps.
- ``NoReference`` (``none``): no π_ref at all, for the reference-free losses (SimPO,
  ORPO).

``STRATEGIES`` maps each value of ``DPOConfig.reference`` to how it is built as training
starts and what it needs. The loop calls ``after_step(policy, step)`` once per optimizer
step; only TR-DPO's reference uses it.

Each reads its batches with the run's ``Layout`` (``dpo_ref.layouts``), so its log-probs
are summed or averaged exactly as the policy's are.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from .devices import eval_mode
from .layouts import ROWS, Layout


class Reference:
    """What the loop asks of π_ref: the log-probs of a batch, and a call after each
    optimizer step."""

    def logps(self,
              batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, policy: torch.nn.Module, step: int) -> None:
        """Called once after optimizer step ``step`` (from 1): π_ref stays (TR-DPO's
        moves)."""

    def for_evaluation(self) -> "Reference":
        """π_ref for the evaluation pairs: the same object, except where it holds
        values per training pair (``PrecomputedReference``)."""
        return self

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must keep for an exact resume: nothing for a π_ref that
        is rebuilt from the starting model; TR-DPO's moved weights."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore ``state()`` from a checkpoint (``tensors`` may be sharded-like)."""


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode that autograd never updates."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class CopyReference(Reference):
    def __init__(self, policy: torch.nn.Module, layout: Layout = ROWS,
                 frozen: torch.nn.Module | None = None):
        """``frozen``: the copy, when it was taken already (FSDP shards it with the
        policy first)."""
        self.model = frozen if frozen is not None else frozen_copy(policy)
        self.layout = layout

    @torch.no_grad()
    def logps(self, batch):
        out = self.layout.logps(self.model, batch)
        return out["chosen_logps"], out["rejected_logps"]


class LoraReference(Reference):
    def __init__(self, policy: torch.nn.Module, layout: Layout = ROWS):
        if not hasattr(policy, "disable_adapter"):
            raise TypeError("the 'lora' reference needs a PEFT model "
                            "(wrap the policy with peft.get_peft_model)")
        self.policy = policy
        self.layout = layout

    @torch.no_grad()
    def logps(self, batch):
        with self.policy.disable_adapter():
            out = self.layout.logps(self.policy, batch)
        return out["chosen_logps"], out["rejected_logps"]


class PrecomputedReference(Reference):
    """Reference log-probs looked up by the pair's ``index`` (set by the collator)."""

    def __init__(self, chosen: torch.Tensor, rejected: torch.Tensor):
        self.chosen, self.rejected = chosen, rejected
        # the same table for the evaluation pairs, whose index counts from 0 in their
        # own dataset (the precomputed strategy fills it)
        self.evaluation: PrecomputedReference | None = None

    def for_evaluation(self) -> Reference:
        # None: no evaluation pairs, and an eval_fn alone reads no π_ref
        return self.evaluation if self.evaluation is not None else _NotPrecomputed()

    @classmethod
    @torch.no_grad()
    def from_batches(cls, model: torch.nn.Module,
                     batches: Iterable[dict[str, torch.Tensor]], n_pairs: int,
                     layout: Layout = ROWS,
                     autocast: Callable | None = None) -> "PrecomputedReference":
        chosen = torch.full((n_pairs,), float("nan"))
        rejected = torch.full((n_pairs,), float("nan"))
        with eval_mode(model):
            for batch in batches:
                with autocast() if autocast else contextlib.nullcontext():
                    out = layout.logps(model, batch)
                index = batch["index"].cpu()
                chosen[index], rejected[index] = (out["chosen_logps"].float().cpu(),
                                                  out["rejected_logps"].float().cpu())
        if torch.isnan(chosen).any() or torch.isnan(rejected).any():
            raise RuntimeError("precomputing reference log-probs left some pairs "
                               "without a value")
        return cls(chosen, rejected)

    def logps(self, batch):
        index = batch["index"]
        # once: indexing on the GPU needs no host synchronisation
        if self.chosen.device != index.device:
            self.chosen, self.rejected = (self.chosen.to(index.device),
                                          self.rejected.to(index.device))
        return self.chosen[index], self.rejected[index]


class _NotPrecomputed(Reference):
    def logps(self, batch):
        raise RuntimeError("no reference log-probs were precomputed for evaluation "
                           "pairs (Start(..., evaluation=...))")


class TrustRegionReference(CopyReference):
    """TR-DPO's soft update (Gorbatovski et al. 2024, arXiv 2404.09656): a frozen copy
    that every τ optimizer steps moves toward the policy,
    θ_ref ← α·θ + (1 − α)·θ_ref (α = 1: π_ref := π_θ, the hard update).
    TRL's ``sync_ref_model``, with α ``ref_model_mixup_alpha``,
    τ ``ref_model_sync_steps``.
    """

    def __init__(self, policy: torch.nn.Module, layout: Layout = ROWS,
                 frozen: torch.nn.Module | None = None, *, alpha: float,
                 sync_steps: int):
        super().__init__(policy, layout, frozen)
        self.alpha, self.sync_steps = alpha, sync_steps

    def state(self) -> dict[str, torch.Tensor]:
        # it has moved since the start: rebuilding it from the model would not resume
        return dict(self.model.named_parameters())

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, p in self.model.named_parameters():
            p.copy_(tensors[name])

    @torch.no_grad()
    def after_step(self, policy: torch.nn.Module, step: int) -> None:
        # the copy was taken whole, so its parameters pair with θ's
        if step % self.sync_steps == 0:
            for ref, new in zip(self.model.parameters(), policy.parameters(),
                                strict=True):
                # TRL's two ops: the same bits
                ref.mul_(1 - self.alpha).add_(new, alpha=self.alpha)


class NoReference(Reference):
    """No π_ref: nothing is copied, precomputed or run. For the losses that read no
    reference (``losses.REFERENCE_FREE``: simpo, orpo), which ``DPOConfig`` allows with
    this one only."""

    def logps(self, batch: dict[str, torch.Tensor]) -> tuple[None, None]:
        return None, None


@dataclass
class Start:
    """What a strategy may read as training starts: the placed policy, the run's layout
    and autocast, the frozen copy (taken for the strategies that declare
    ``needs_copy``, before sharding), the training and evaluation pairs once in order
    (``training()``, ``evaluation()``: what ``precomputed`` reads) and TR-DPO's α and
    τ (``DPOConfig`` holds their defaults)."""

    policy: torch.nn.Module
    layout: Layout
    autocast: Callable | None = None
    frozen: torch.nn.Module | None = None
    training: Callable[[], Iterable[dict]] | None = None
    n_pairs: int = 0
    evaluation: Callable[[], Iterable[dict]] | None = None
    n_eval: int = 0
    mixup_alpha: float | None = None
    sync_steps: int | None = None


def _copy(start: Start) -> Reference:
    return CopyReference(start.policy, start.layout, start.frozen)


def _trust_region(start: Start) -> Reference:
    return TrustRegionReference(start.policy, start.layout, start.frozen,
                                alpha=start.mixup_alpha, sync_steps=start.sync_steps)


def _precomputed(start: Start) -> Reference:
    """One pass over the training pairs (and the evaluation pairs: a table of their
    own, ``for_evaluation()``). With LoRA it runs on the base model: fresh adapters
    change nothing yet, but "adapters off" is exactly the model training starts from."""
    policy, table = start.policy, PrecomputedReference.from_batches
    with (policy.disable_adapter() if hasattr(policy, "disable_adapter")
          else contextlib.nullcontext()):
        evaluation = (table(policy, start.evaluation(), start.n_eval, start.layout,
                            start.autocast) if start.evaluation else None)
        reference = table(policy, start.training(), start.n_pairs, start.layout,
                          start.autocast)
    reference.evaluation = evaluation
    return reference


@dataclass(frozen=True)
class Strategy:
    """A value of ``DPOConfig.reference``: how π_ref is built, and what it needs."""

    build: Callable[[Start], Reference]
    needs_copy: bool = False  # a frozen copy of the policy, taken whole before sharding


STRATEGIES = {
    "copy": Strategy(_copy, needs_copy=True),
    "lora": Strategy(lambda start: LoraReference(start.policy, start.layout)),
    "precomputed": Strategy(_precomputed),
    "tr": Strategy(_trust_region, needs_copy=True),
    "none": Strategy(lambda start: NoReference()),
}

