"""Checkers for the course's exercises: compare a reader's function with dpo_ref's on random inputs.

Each checker returns a short report and raises ``AssertionError`` naming the first difference, so a
notebook cell either prints "ok" or says exactly what to fix.
"""

from __future__ import annotations

from typing import Callable

import torch

from .logprobs import sequence_logps
from .losses import dpo_loss


def _random_logps(n: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [-(torch.rand(n, generator=generator, dtype=torch.float64) * 40 + 0.5) for _ in range(4)]


def check_dpo_loss(user_loss: Callable, loss_type: str = "sigmoid", beta: float = 0.1, trials: int = 5) -> str:
    """``user_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)`` → per-pair losses
    (or a tuple whose first item is the losses). Checks values, shape and gradients against
    ``dpo_loss(..., loss_type=loss_type)``."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(trials):
        inputs = [x.requires_grad_(True) for x in _random_logps(8, generator)]
        theirs = user_loss(*inputs, beta)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        if not isinstance(theirs, torch.Tensor):
            raise AssertionError(f"expected a tensor of per-pair losses, got {type(theirs).__name__}")
        if theirs.shape != (8,):
            raise AssertionError(f"expected one loss per pair, shape (8,), got {tuple(theirs.shape)} (did you average?)")
        ours = dpo_loss(*inputs, beta=beta, loss_type=loss_type)[0]
        if not torch.allclose(theirs, ours, atol=1e-6, rtol=1e-6):
            i = int((theirs - ours).abs().argmax())
            raise AssertionError(f"trial {trial}, pair {i}: your loss is {theirs[i].item():.6f}, expected {ours[i].item():.6f}")
        grads_theirs = torch.autograd.grad(theirs.sum(), inputs[:2], allow_unused=True)
        grads_ours = torch.autograd.grad(ours.sum(), inputs[:2])
        for name, g_t, g_o in zip(("policy_chosen_logps", "policy_rejected_logps"), grads_theirs, grads_ours):
            if g_t is None or not torch.allclose(g_t, g_o, atol=1e-6):
                raise AssertionError(f"trial {trial}: the gradient with respect to {name} differs (is something detached?)")
    # Extreme margins in float32: a log(sigmoid(x)) implementation returns inf here.
    big = torch.tensor([500.0, -500.0])
    zero = torch.zeros(2)
    extreme = user_loss(big / beta, zero, zero, zero, beta)
    extreme = extreme[0] if isinstance(extreme, tuple) else extreme
    if not torch.isfinite(extreme).all():
        raise AssertionError("non-finite loss for a margin of ±500/β: use logsigmoid, not log(sigmoid)")
    return f"ok: your {loss_type} loss matches dpo_loss in value and gradient on {trials} random batches"


def check_sequence_logps(user_fn: Callable, trials: int = 5) -> str:
    """``user_fn(logits, input_ids, loss_mask)`` → summed response log-probs, shape (batch,)
    (or a tuple whose first item is that). Checks against ``dpo_ref.logprobs.sequence_logps``."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(trials):
        batch, width, vocab = 4, 10, 13
        logits = torch.randn(batch, width, vocab, generator=generator, dtype=torch.float64)
        input_ids = torch.randint(0, vocab, (batch, width), generator=generator)
        loss_mask = torch.zeros(batch, width, dtype=torch.long)
        for row in range(batch):
            start = int(torch.randint(1, 5, (1,), generator=generator))
            end = int(torch.randint(start + 1, width + 1, (1,), generator=generator))
            loss_mask[row, start:end] = 1
        theirs = user_fn(logits, input_ids, loss_mask)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        ours = sequence_logps(logits, input_ids, loss_mask)[0]
        if theirs.shape != ours.shape:
            raise AssertionError(f"expected shape {tuple(ours.shape)}, got {tuple(theirs.shape)}")
        if not torch.allclose(theirs.double(), ours.double(), atol=1e-5):
            i = int((theirs.double() - ours.double()).abs().argmax())
            hint = ""
            shifted = (torch.log_softmax(logits, -1).gather(-1, input_ids.unsqueeze(-1)).squeeze(-1) * loss_mask).sum(-1)
            if torch.allclose(theirs.double(), shifted, atol=1e-5):
                hint = " — logits at position t predict token t+1: shift logits and labels by one"
            raise AssertionError(f"trial {trial}, row {i}: got {theirs[i].item():.5f}, expected {ours[i].item():.5f}{hint}")
    return f"ok: your function matches sequence_logps on {trials} random batches"
