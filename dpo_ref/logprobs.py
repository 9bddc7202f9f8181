"""Per-sequence log-probabilities of responses, and the concatenated chosen+rejected
forward pass.

A causal LM's logits at position t predict token t+1, so the log-probability of a
response is the sum, over response positions only, of log softmax(logits[t-1])[token t].
The prompt and the padding are masked out; the number of response tokens is returned
with every sum, and ``per_token_mean`` is the one place that divides them (the row
``Layout`` applies it when the run asks for means). ``response_nll`` is the supervised
loss on responses (the toy's pretraining, SFT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .chunked_logps import final_hidden, head_weight, masked_target_logps


def token_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t = 1..T-1, shape (batch, T-1).

    log p = logit[target] − logsumexp(logits): only the target entries are gathered.
    In fp32, because bf16 log-probs lose several nats when summed over a long response.
    (Autograd still keeps one fp32 (batch, T-1, vocab) tensor for the backward pass, as
    ``log_softmax(...).gather(...)`` would.)
    """
    # fp32: bf16 log-probs lose several nats over long responses
    logits = logits[:, :-1, :].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    return logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def per_token_mean(logps: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """log π(y|x)/|y| from the summed log-probs and the response lengths (an empty
    response counts as one token, so that it divides by nothing smaller)."""
    return logps / n_tokens.clamp(min=1)


def sequence_logps(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probability and response length for each row.

    ``loss_mask[b, t]`` is 1 where token t of row b belongs to the response (never on
    prompt or padding tokens; padding may be on either side). Returns
    ``(summed_logps, n_tokens)``, both of shape (batch,); ``summed_logps / n_tokens``
    is the per-token mean.
    """
    mask = loss_mask[:, 1:].to(torch.float32)
    per_token = token_logps(logits, input_ids) * mask
    return per_token.sum(-1), mask.sum(-1)


def concatenated_forward(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], chunk: int = 0
) -> dict[str, torch.Tensor]:
    """Summed log-probabilities of the chosen and rejected responses, and their
    lengths, in one forward pass.

    The collator stacks the B chosen sequences on top of the B rejected ones (2B rows),
    so the model runs once per step instead of twice. With ``chunk`` > 0 no logits are
    materialised: the response tokens' log-probs come from the final hidden states,
    ``chunk`` tokens at a time (``dpo_ref.chunked_logps``).
    """
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  use_cache=False)
    if chunk:
        mask = batch["loss_mask"][:, 1:].bool()  # position t predicts token t + 1
        per_token = masked_target_logps(final_hidden(model, **inputs)[:, :-1],
                                        head_weight(model), batch["input_ids"][:, 1:],
                                        mask, chunk)
        logps, n_tokens = per_token.sum(-1), mask.sum(-1).to(torch.float32)
    else:
        logps, n_tokens = sequence_logps(model(**inputs).logits, batch["input_ids"],
                                         batch["loss_mask"])
    n_pairs = logps.shape[0] // 2
    return {
        "chosen_logps": logps[:n_pairs],
        "rejected_logps": logps[n_pairs:],
        "chosen_tokens": n_tokens[:n_pairs],
        "rejected_tokens": n_tokens[n_pairs:],
    }


def response_nll(model: torch.nn.Module,
                 batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood per response token over a batch of rows
    (``loss_mask`` = 1 on them).

    The same number as ``-sum(sequence_logps) / sum(n_tokens)``, through
    ``cross_entropy`` with the prompt and padding labels ignored.
    """
    input_ids, loss_mask = batch["input_ids"], batch["loss_mask"]
    logits = model(input_ids=input_ids, attention_mask=batch["attention_mask"],
                   use_cache=False).logits
    labels = input_ids[:, 1:].masked_fill(loss_mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           labels.reshape(-1))
