import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dpo_ref.chunked_logps import masked_target_logps
from dpo_ref.lab.exercises import (check_best_of_n, check_chunked_logps, check_dpo_loss, check_orpo_loss,
                                check_sequence_logps, check_simpo_loss)
from dpo_ref.logprobs import sequence_logps


def test_loss_checker_accepts_a_right_answer_and_names_wrong_ones():
    def right(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))

    def unstable(pc, pr, rc, rr, beta):
        return -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr))))

    def averaged(pc, pr, rc, rr, beta):
        return right(pc, pr, rc, rr, beta).mean()

    def swapped(pc, pr, rc, rr, beta):
        return -F.logsigmoid(beta * ((pc - pr) - (rr - rc)))

    assert check_dpo_loss(right).startswith("ok")
    with pytest.raises(AssertionError, match="logsigmoid"):
        check_dpo_loss(unstable)
    with pytest.raises(AssertionError, match="did you average"):
        check_dpo_loss(averaged)
    with pytest.raises(AssertionError, match="expected"):
        check_dpo_loss(swapped)


def test_logps_checker_spots_the_missing_shift():
    def right(logits, ids, mask):
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (logp * mask[:, 1:]).sum(-1)

    def unshifted(logits, ids, mask):
        return (torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1) * mask).sum(-1)

    assert check_sequence_logps(right).startswith("ok")
    with pytest.raises(AssertionError, match="shift"):
        check_sequence_logps(unshifted)


def _summed_by_row(per_token, mask):
    """(M,) log-probs of the masked positions → (batch,) sums, M in the row-major order of mask."""
    return torch.zeros(mask.shape[0]).index_add_(0, mask.nonzero()[:, 0], per_token)


def _chunked(hidden, weight, input_ids, loss_mask, chunk, *, last_chunk=True, log_sum_exp=True):
    """A reader's chunked log-probs; the flags switch on two common mistakes."""
    mask = loss_mask[:, 1:].bool()
    h, targets = hidden[:, :-1][mask], input_ids[:, 1:][mask]
    out = torch.zeros(len(targets))
    stop = len(targets) if last_chunk else len(targets) - len(targets) % chunk
    for start in range(0, stop, chunk):
        logits = h[start:start + chunk] @ weight.T
        norm = logits.logsumexp(-1) if log_sum_exp else logits.exp().sum(-1).log()
        out[start:start + chunk] = logits.gather(1, targets[start:start + chunk, None])[:, 0] - norm
    return _summed_by_row(out, mask)


def test_chunked_logps_checker_accepts_dpo_ref_and_a_loop():
    def dpo_refs_own(hidden, weight, input_ids, loss_mask, chunk):
        mask = loss_mask[:, 1:].bool()
        return masked_target_logps(hidden[:, :-1], weight, input_ids[:, 1:], mask, chunk).sum(-1)

    assert check_chunked_logps(dpo_refs_own).startswith("ok")
    assert check_chunked_logps(_chunked).startswith("ok")


@pytest.mark.parametrize("wrong, message", [
    (lambda h, w, ids, m, c: sequence_logps(h @ w.T, ids, m)[0], "chunk tokens at a time"),
    # Each token scored with its own position's hidden state: the forgotten shift.
    (lambda h, w, ids, m, c: _chunked(F.pad(h, (0, 0, 0, 1))[:, 1:], w, ids, m, c), "t\\+1"),
    (lambda h, w, ids, m, c: _chunked(h, w, ids, torch.ones_like(m), c), "loss_mask"),
    (lambda h, w, ids, m, c: _chunked(h, w, ids, m, c, last_chunk=False), "partial chunk"),
    (lambda h, w, ids, m, c: _chunked(h, w, ids, m, c, log_sum_exp=False), "logsumexp"),
])
def test_chunked_logps_checker_names_the_mistake(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_chunked_logps(wrong)


def _best_of_n(values, q, n, subtract=True):
    cdf = list(itertools.accumulate(q))
    q_n = [cdf[j] ** n - (cdf[j - 1] if j and subtract else 0.0) ** n for j in range(len(q))]
    reward = sum(v * w for v, w in zip(values, q_n))
    return reward, sum(w * math.log(w / p) for w, p in zip(q_n, q) if w > 0)


def test_best_of_n_checker_accepts_the_closed_form():
    assert check_best_of_n(_best_of_n).startswith("ok")


@pytest.mark.parametrize("wrong, message", [
    (lambda v, q, n: (_best_of_n(v, q, n)[0], math.log(n) - (n - 1) / n), "upper bound"),
    (lambda v, q, n: _best_of_n(v, q, n, subtract=False), "F\\(v⁻\\)"),
    (lambda v, q, n: _best_of_n(v[::-1], q[::-1], n), "expected reward"),
])
def test_best_of_n_checker_names_the_mistake(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_best_of_n(wrong)


def _simpo(c, r, n_c, n_r, beta, gamma):
    return -F.logsigmoid(beta * (c / n_c - r / n_r) - gamma)


def _orpo(c, r, n_c, n_r, lam):
    c, r = c / n_c, r / n_r
    log_odds = (c - torch.log1p(-torch.exp(c))) - (r - torch.log1p(-torch.exp(r)))
    return -c - lam * F.logsigmoid(log_odds)


def test_family_checkers_accept_the_formulas():
    assert check_simpo_loss(_simpo).startswith("ok")
    assert check_orpo_loss(_orpo).startswith("ok")


@pytest.mark.parametrize("wrong, message", [
    (lambda c, r, n_c, n_r, b, g: -F.logsigmoid(b * (c - r) - g), "per-token mean"),
    (lambda c, r, n_c, n_r, b, g: _simpo(c, r, n_c, n_r, b, 0.0), "target margin"),
    (lambda c, r, n_c, n_r, b, g: _simpo(c, r, n_c, n_r, b, b * g), "after the β scaling"),
    (lambda c, r, n_c, n_r, b, g: _simpo(c, r, n_c, n_r, b, g).mean(), "did you average"),
    (lambda c, r, n_c, n_r, b, g: _simpo(c.detach(), r, n_c, n_r, b, g), "detached"),
])
def test_simpo_checker_names_the_mistake(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_simpo_loss(wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda c, r, n_c, n_r, lam: -c / n_c - lam * F.logsigmoid(c / n_c - r / n_r), "odds"),
    (lambda c, r, n_c, n_r, lam: _orpo(c, r, n_c, n_r, lam) + c / n_c, "adds the NLL"),
    (lambda c, r, n_c, n_r, lam: _orpo(c, r, n_c, n_r, 1.0), "expected"),
])
def test_orpo_checker_names_the_mistake(wrong, message):
    with pytest.raises(AssertionError, match=message):
        check_orpo_loss(wrong)
