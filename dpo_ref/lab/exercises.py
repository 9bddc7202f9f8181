"""Checkers for the course's exercises: compare a reader's function with dpo_ref's on
random inputs.

Each checker returns a short report and raises ``AssertionError`` naming the first
difference, so a notebook cell either prints "ok" or says exactly what to fix.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Callable

import torch
import torch.nn.functional as F

from ..chunked_logps import masked_target_logps, target_logps
from ..logprobs import sequence_logps
from ..losses import preference_loss


def _random_logps(n: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [-(torch.rand(n, generator=generator, dtype=torch.float64) * 40 + 0.5)
            for _ in range(4)]


def check_dpo_loss(user_loss: Callable, loss_type: str = "sigmoid", beta: float = 0.1,
                   trials: int = 5) -> str:
    """``user_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)``
    → per-pair losses (or a tuple whose first item is the losses). Checks values,
    shape and gradients against ``preference_loss(..., loss_type=loss_type)``."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(trials):
        inputs = [x.requires_grad_(True) for x in _random_logps(8, generator)]
        theirs = user_loss(*inputs, beta)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        if not isinstance(theirs, torch.Tensor):
            raise AssertionError("expected a tensor of per-pair losses, "
                                 f"got {type(theirs).__name__}")
        if theirs.shape != (8,):
            raise AssertionError("expected one loss per pair, shape (8,), "
                                 f"got {tuple(theirs.shape)} (did you average?)")
        ours = preference_loss(*inputs, beta=beta, loss_type=loss_type)[0]
        if not torch.allclose(theirs, ours, atol=1e-6, rtol=1e-6):
            i = int((theirs - ours).abs().argmax())
            raise AssertionError(
                f"trial {trial}, pair {i}: your loss is {theirs[i].item():.6f}, "
                f"expected {ours[i].item():.6f}")
        grads_theirs = torch.autograd.grad(theirs.sum(), inputs[:2], allow_unused=True)
        grads_ours = torch.autograd.grad(ours.sum(), inputs[:2])
        names = ("policy_chosen_logps", "policy_rejected_logps")
        for name, g_t, g_o in zip(names, grads_theirs, grads_ours):
            if g_t is None or not torch.allclose(g_t, g_o, atol=1e-6):
                raise AssertionError(
                    f"trial {trial}: the gradient with respect to {name} differs "
                    "(is something detached?)")
    # Extreme margins in float32: a log(sigmoid(x)) implementation returns inf here.
    big = torch.tensor([500.0, -500.0])
    zero = torch.zeros(2)
    extreme = user_loss(big / beta, zero, zero, zero, beta)
    extreme = extreme[0] if isinstance(extreme, tuple) else extreme
    if not torch.isfinite(extreme).all():
        raise AssertionError("non-finite loss for a margin of ±500/β: "
                             "use logsigmoid, not log(sigmoid)")
    return (f"ok: your {loss_type} loss matches dpo_loss in value and gradient on "
            f"{trials} random batches")


def check_sequence_logps(user_fn: Callable, trials: int = 5) -> str:
    """``user_fn(logits, input_ids, loss_mask)`` → summed response log-probs, shape
    (batch,) (or a tuple whose first item is that). Checks against
    ``dpo_ref.logprobs.sequence_logps``."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(trials):
        batch, width, vocab = 4, 10, 13
        logits = torch.randn(batch, width, vocab, generator=generator,
                             dtype=torch.float64)
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
            raise AssertionError(f"expected shape {tuple(ours.shape)}, "
                                 f"got {tuple(theirs.shape)}")
        if not torch.allclose(theirs.double(), ours.double(), atol=1e-5):
            i = int((theirs.double() - ours.double()).abs().argmax())
            hint = ""
            own_position = (torch.log_softmax(logits, -1)
                            .gather(-1, input_ids.unsqueeze(-1)))
            unshifted = (own_position.squeeze(-1) * loss_mask).sum(-1)
            if torch.allclose(theirs.double(), unshifted, atol=1e-5):
                hint = (" — logits at position t predict token t+1: "
                        "shift logits and labels by one")
            raise AssertionError(f"trial {trial}, row {i}: got {theirs[i].item():.5f}, "
                                 f"expected {ours[i].item():.5f}{hint}")
    return f"ok: your function matches sequence_logps on {trials} random batches"


# ---------------------------------------------- book/09_2: log-probs without the logits


class _LargestTensor(torch.overrides.TorchFunctionMode):
    """Records the largest tensor any torch call returns while active: how a checker
    sees, without profiling memory, whether a function built the full-vocabulary
    logits."""

    def __init__(self) -> None:
        super().__init__()
        self.numel, self.shape = 0, ()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.shape = t.numel(), tuple(t.shape)
        return out


def _reference_chunked(hidden: torch.Tensor, weight: torch.Tensor,
                       input_ids: torch.Tensor, mask: torch.Tensor, chunk: int,
                       shift: bool = True) -> torch.Tensor:
    """dpo_ref's own computation (as in ``concatenated_forward`` with ``chunk``);
    ``shift=False`` is the common mistake of scoring each token with its own position's
    hidden state."""
    if shift:
        hidden, input_ids, mask = hidden[:, :-1], input_ids[:, 1:], mask[:, 1:]
    return masked_target_logps(hidden, weight, input_ids, mask.bool(), chunk).sum(-1)


def _chunked_hint(theirs: torch.Tensor, hidden, weight, input_ids, loss_mask,
                  chunk) -> str:
    """Name the likely mistake when the reader's sums match a known wrong variant."""
    def close(other: torch.Tensor) -> bool:
        return torch.allclose(theirs.double(), other.double(), atol=1e-4)

    if close(_reference_chunked(hidden, weight, input_ids, loss_mask, chunk,
                                shift=False)):
        return (" — hidden state t predicts token t+1: "
                "pair hidden[:, :-1] with input_ids[:, 1:]")
    if close(_reference_chunked(hidden, weight, input_ids, torch.ones_like(loss_mask),
                                chunk)):
        return (" — sum only where loss_mask is 1 (the response tokens), "
                "not over every position")
    mask = loss_mask[:, 1:].bool()
    per_token = target_logps(hidden[:, :-1][mask], weight, input_ids[:, 1:][mask],
                             chunk)
    n_full = (per_token.shape[0] // chunk) * chunk
    if n_full < per_token.shape[0]:
        kept = torch.cat([per_token[:n_full], torch.zeros(per_token.shape[0] - n_full)])
        if close(torch.zeros(mask.shape).masked_scatter(mask, kept).sum(-1)):
            return (" — the last, partial chunk is missing: "
                    "loop up to the number of tokens itself")
    return ""


def check_chunked_logps(user_fn: Callable, trials: int = 4) -> str:
    """``user_fn(hidden, weight, input_ids, loss_mask, chunk)`` → summed response
    log-probs, shape (batch,), from the final hidden states (batch, T, H) and the LM
    head's weight (V, H), the same as
    ``sequence_logps(hidden @ weight.T, input_ids, loss_mask)``, without ever holding
    more than ``chunk`` × V logits. Run without gradients, as the reference model's
    forward is; the reference values come from ``dpo_ref.chunked_logps``."""
    generator = torch.Generator().manual_seed(0)
    batch, width, size, vocab = 4, 12, 8, 64
    for trial in range(trials + 1):
        chunk = (5, 8, 16, 3, 7)[trial % 5]
        # The last trial scales the logits to hundreds: exp() of them overflows
        # in float32.
        scale = 60.0 if trial == trials else 1.0
        hidden = torch.randn(batch, width, size, generator=generator) * scale
        weight = torch.randn(vocab, size, generator=generator)
        input_ids = torch.randint(0, vocab, (batch, width), generator=generator)
        loss_mask = torch.zeros(batch, width, dtype=torch.long)
        # a prompt of 2-5 tokens, then a response, then padding
        for row in range(batch):
            start = int(torch.randint(2, 6, (1,), generator=generator))
            end = int(torch.randint(start + 2, width + 1, (1,), generator=generator))
            loss_mask[row, start:end] = 1
        with torch.no_grad(), _LargestTensor() as largest:
            theirs = user_fn(hidden, weight, input_ids, loss_mask, chunk)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        with torch.no_grad():
            ours = _reference_chunked(hidden, weight, input_ids, loss_mask, chunk)
        # Copies of the inputs are allowed; anything larger than them and than one
        # chunk's logits is (a slice of) the logits of many tokens at once.
        allowed = max(chunk * vocab, hidden.numel(), weight.numel())
        if largest.numel > allowed:
            raise AssertionError(
                f"trial {trial}: your function created a tensor of shape "
                f"{largest.shape}; with chunk={chunk} one chunk's logits are "
                f"{chunk} × {vocab}: compute the logits chunk tokens at a time, "
                f"never for every token at once")
        if not isinstance(theirs, torch.Tensor) or theirs.shape != ours.shape:
            got = (tuple(theirs.shape) if isinstance(theirs, torch.Tensor)
                   else type(theirs).__name__)
            raise AssertionError("expected one summed log-prob per row, "
                                 f"shape {tuple(ours.shape)}, got {got}")
        if not torch.isfinite(theirs).all():
            raise AssertionError(
                f"trial {trial}: non-finite log-probs where the logits reach the "
                "hundreds: use logsumexp, not log(exp(logits).sum())")
        if not torch.allclose(theirs.double(), ours.double(), atol=1e-4, rtol=1e-5):
            i = int((theirs.double() - ours.double()).abs().argmax())
            hint = _chunked_hint(theirs, hidden, weight, input_ids, loss_mask, chunk)
            raise AssertionError(
                f"trial {trial} (chunk={chunk}), row {i}: got "
                f"{theirs[i].item():.5f}, expected {ours[i].item():.5f}{hint}")
    return (f"ok: your function matches dpo_ref.chunked_logps on {trials + 1} random "
            "batches, never holding more than one chunk's logits")


# ---------------------------------------------- book/08_0: best-of-N's exact KL


def _best_of_n_by_enumeration(values: list[float], q: list[float],
                              n: int) -> tuple[float, float]:
    """Expected reward and KL(q_N ‖ q) of the maximum of n draws, by listing every
    n-tuple of draws: slow, but independent of the closed form the reader writes."""
    q_n = [0.0] * len(q)
    for draws in itertools.product(range(len(q)), repeat=n):
        # values ascending: the largest index wins
        q_n[max(draws)] += math.prod(q[j] for j in draws)
    reward = sum(v * w for v, w in zip(values, q_n))
    kl = sum(w * math.log(w / p) for w, p in zip(q_n, q) if w > 0)
    return reward, kl


def _best_of_n_hint(values: list[float], q: list[float], n: int,
                    theirs: tuple[float, float]) -> str:
    cdf = list(itertools.accumulate(q))
    if math.isclose(theirs[1], math.log(n) - (n - 1) / n, rel_tol=1e-6, abs_tol=1e-9):
        return " — that is the upper bound log N − (N−1)/N, not the exact KL"
    if math.isclose(theirs[0], sum(v * f ** n for v, f in zip(values, cdf)),
                    rel_tol=1e-6):
        return " — F(v)^N is P(max ≤ v); P(max = v) is F(v)^N − F(v⁻)^N"
    return ""


def check_best_of_n(user_fn: Callable, trials: int = 6) -> str:
    """``user_fn(values, q, n)`` → ``(expected_reward, kl)`` of best-of-n sampling,
    where ``values`` are the reward values in increasing order and ``q[j]`` the
    reference's probability of ``values[j]``. Checked against an enumeration of every
    n-tuple of draws."""
    rng = random.Random(0)
    cases = [([2.0], [1.0], 3)]  # one reward value: best-of-n is the reference itself
    for _ in range(trials):
        m = rng.randint(2, 4)
        weights = [rng.uniform(0.05, 1.0) for _ in range(m)]
        values = sorted(rng.sample(range(6), m))
        q = [w / sum(weights) for w in weights]
        cases.append(([float(v) for v in values], q, rng.randint(1, 5)))
    for trial, (values, q, n) in enumerate(cases):
        theirs = tuple(float(x) for x in user_fn(list(values), list(q), n))
        ours = _best_of_n_by_enumeration(values, q, n)
        for name, t, o in zip(("expected reward", "KL"), theirs, ours):
            if not math.isclose(t, o, rel_tol=1e-6, abs_tol=1e-9):
                hint = _best_of_n_hint(values, q, n, theirs)
                q_text = ", ".join(f"{p:.3f}" for p in q)
                raise AssertionError(
                    f"trial {trial} (n={n}, values={values}, q=[{q_text}]): "
                    f"your {name} is {t:.6f}, expected {o:.6f}{hint}")
    return ("ok: your best-of-n reward and KL match an enumeration of all draws in "
            f"{len(cases)} cases")


# ---------------------------------------------- book/10_1: SimPO and ORPO
def _compare_family_loss(user_fn: Callable, ours_fn: Callable,
                         hints: dict[str, Callable], what: str, trials: int) -> str:
    """``user_fn(chosen, rejected, n_chosen, n_rejected)`` (summed log-probs of 8 pairs,
    lengths of 1 to 40 tokens) against ``ours_fn`` in values, shape and gradients; on a
    mismatch, name the first of ``hints`` (wrong versions of the loss) that the reader's
    values match."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(trials):
        n_c, n_r = (torch.randint(1, 41, (8,), generator=generator).double()
                    for _ in range(2))
        inputs = [(-(torch.rand(8, generator=generator, dtype=torch.float64) * 3
                     + 0.05) * n).requires_grad_(True) for n in (n_c, n_r)]
        theirs, ours = user_fn(*inputs, n_c, n_r), ours_fn(*inputs, n_c, n_r)
        if not isinstance(theirs, torch.Tensor) or theirs.shape != (8,):
            got = (tuple(theirs.shape) if isinstance(theirs, torch.Tensor)
                   else type(theirs).__name__)
            raise AssertionError(f"expected one loss per pair, shape (8,), got {got} "
                                 "(did you average?)")
        if not torch.allclose(theirs, ours, atol=1e-6, rtol=1e-6):
            hint = next((f" — {message}" for message, wrong in hints.items()
                         if torch.allclose(theirs, wrong(*inputs, n_c, n_r),
                                           atol=1e-6)), "")
            i = int((theirs - ours).abs().argmax())
            raise AssertionError(
                f"trial {trial}, pair {i}: your {what} loss is {theirs[i].item():.6f}, "
                f"expected {ours[i].item():.6f}{hint}")
        for name, g_t, g_o in zip(("chosen", "rejected"),
                                  torch.autograd.grad(theirs.sum(), inputs,
                                                      allow_unused=True),
                                  torch.autograd.grad(ours.sum(), inputs)):
            if g_t is None or not torch.allclose(g_t, g_o, atol=1e-6):
                raise AssertionError(
                    f"trial {trial}: the gradient with respect to the {name} "
                    "log-probs differs (is something detached?)")
    return (f"ok: your {what} loss matches dpo_loss in value and gradient on {trials} "
            "random batches")


def check_simpo_loss(user_fn: Callable, beta: float = 2.0, gamma: float = 1.0,
                     trials: int = 5) -> str:
    """``user_fn(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, beta,
    gamma)`` → SimPO's per-pair losses from *summed* log-probs and lengths, against
    ``preference_loss(loss_type="simpo")``."""
    def simpo(c, r, n_c, n_r, mean=True, margin=gamma):
        c, r = (c / n_c, r / n_r) if mean else (c, r)
        return preference_loss(c, r, beta=beta, loss_type="simpo",
                               simpo_gamma=margin, mean_logps=True)[0]
    hints = {"divide each log-prob by its response's length "
             "(SimPO's reward is a per-token mean)":
             lambda *a: simpo(*a, mean=False),
             "subtract the target margin γ inside the sigmoid":
             lambda *a: simpo(*a, margin=0.0),
             "γ is subtracted after the β scaling: "
             "σ(β·Δ − γ), not σ(β·(Δ − γ))":
             lambda *a: simpo(*a, margin=beta * gamma)}
    return _compare_family_loss(
        lambda c, r, n_c, n_r: user_fn(c, r, n_c, n_r, beta, gamma), simpo, hints,
        "SimPO", trials)


def check_orpo_loss(user_fn: Callable, lam: float = 0.1, trials: int = 5) -> str:
    """``user_fn(chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, lam)``
    → ORPO's per-pair losses (NLL of y_w per token plus λ times the odds-ratio term),
    from summed log-probs and lengths, against ``preference_loss(loss_type="orpo")``."""
    def orpo(c, r, n_c, n_r, nll=True, odds=True):
        c, r = c / n_c, r / n_r
        # a ratio of probabilities instead of odds: SimPO's term at β = 1, γ = 0
        if not odds:
            return -c * nll - lam * F.logsigmoid(c - r)
        return (preference_loss(c, r, beta=lam, loss_type="orpo", mean_logps=True)[0]
                + c * (not nll))
    hints = {"the odds are p/(1 − p) with p = exp(mean log-prob): "
             "log odds = log p − log(1 − p)":
             lambda *a: orpo(*a, odds=False),
             "ORPO adds the NLL of y_w per token, −log π(y_w|x)/|y_w|, "
             "to λ times the odds term":
             lambda *a: orpo(*a, nll=False)}
    return _compare_family_loss(lambda c, r, n_c, n_r: user_fn(c, r, n_c, n_r, lam),
                                orpo, hints, "ORPO", trials)
