"""Prompt sharing: the prompt of a pair runs through the model once, for both responses.

``collate`` builds 2B rows, prompt + chosen and prompt + rejected, so every prompt token
is computed twice. In real preference data prompts are often longer than responses, so
most of that work is repeated. Here each pair is one row::

    [pad … pad | prompt | chosen | rejected | pad … pad]

with a custom attention mask: causal as usual, except that rejected tokens do not see
the chosen ones, and rejected positions restart where the prompt ends. Every token then
has exactly the context it has in its own prompt + response row, so the
log-probabilities are the same (up to float rounding) and gradients flow through the
shared prompt from both responses. Prompts are left-padded so all responses start at one
column; the LM head then runs on the response columns only (``logits_to_keep``).

Needs a model that takes ``position_ids`` and a 4D attention mask (Hugging Face Llama,
Mistral, Qwen, Gemma… with the ``sdpa`` or ``eager`` attention);
``dpo_ref.layouts.check_prompt_sharing`` verifies it on real pairs before training.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .chunked_logps import final_hidden, head_weight, masked_target_logps
from .data import PreferencePair

PAD, PROMPT, CHOSEN, REJECTED = 0, 1, 2, 3


def collate_shared(pairs: Iterable[PreferencePair],
                   pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack B pairs into B rows
    ``[left-padded prompt | chosen | rejected | right padding]``.

    ``segment_ids`` says what each token is (PAD/PROMPT/CHOSEN/REJECTED);
    ``position_ids`` restart at the end of the prompt for the rejected response. For the
    response columns (from the widest prompt on), ``source_index`` gives the column
    whose logits predict that token, counted from the last prompt column: the previous
    column, except for the first rejected token, which is predicted from the prompt.
    """
    pairs = list(pairs)
    prompt_width = max(len(p.prompt_ids) for p in pairs)
    response_width = max(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    shape = (len(pairs), prompt_width + response_width)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    segment_ids = torch.zeros(shape, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    # Column prompt_width - 1 + k predicts response column prompt_width + k: the plain
    # causal shift.
    source_index = torch.arange(response_width).repeat(len(pairs), 1)
    for row, pair in enumerate(pairs):
        n_prompt, n_chosen, n_rejected = (len(pair.prompt_ids), len(pair.chosen_ids),
                                          len(pair.rejected_ids))
        start = prompt_width - n_prompt
        end = prompt_width + n_chosen + n_rejected
        input_ids[row, start:end] = torch.tensor(pair.prompt_ids + pair.chosen_ids
                                                 + pair.rejected_ids)
        segment_ids[row, start:prompt_width] = PROMPT
        segment_ids[row, prompt_width : prompt_width + n_chosen] = CHOSEN
        segment_ids[row, prompt_width + n_chosen : end] = REJECTED
        position_ids[row, start:prompt_width] = torch.arange(n_prompt)
        position_ids[row, prompt_width : prompt_width + n_chosen] = (
            torch.arange(n_prompt, n_prompt + n_chosen))
        position_ids[row, prompt_width + n_chosen : end] = (
            torch.arange(n_prompt, n_prompt + n_rejected))
        if n_rejected:
            # the first rejected token is predicted by the last prompt token
            source_index[row, n_chosen] = 0
    return {
        "input_ids": input_ids,
        "segment_ids": segment_ids,
        "position_ids": position_ids,
        "source_index": source_index,
        "index": torch.tensor([p.index for p in pairs], dtype=torch.long),
    }


def shared_attention_mask(segment_ids: torch.Tensor,
                          additive_dtype: torch.dtype | None = None) -> torch.Tensor:
    """(B, 1, T, T) mask: causal, no padding keys, rejected tokens blind to chosen ones.

    Boolean (True = may attend) for ``sdpa``; the ``eager`` attention adds its mask to
    the scores, so it gets 0 / most-negative floats instead (``additive_dtype``).
    """
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool,
                        device=segment_ids.device).tril()
    query, key = segment_ids[:, :, None], segment_ids[:, None, :]
    allowed = causal & (key != PAD) & ~((query == REJECTED) & (key == CHOSEN))
    # A padding query would otherwise see no key at all (NaN softmax); its output is
    # never used.
    allowed |= torch.eye(length, dtype=torch.bool, device=segment_ids.device)
    allowed = allowed[:, None]
    if additive_dtype is None:
        return allowed
    return (torch.zeros(allowed.shape, dtype=additive_dtype, device=allowed.device)
            .masked_fill(~allowed, torch.finfo(additive_dtype).min))


def _attention_implementation(model: torch.nn.Module) -> str:
    config = (getattr(model, "config", None)
              or getattr(getattr(model, "module", None), "config", None))
    return getattr(config, "_attn_implementation", None) or "sdpa"


def shared_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                   chunk: int = 0) -> dict[str, torch.Tensor]:
    """Summed chosen and rejected log-probabilities, and their lengths, from one row
    per pair (the same output as ``concatenated_forward``).

    With ``chunk`` > 0 the logits are never materialised (``dpo_ref.chunked_logps``).
    """
    segment_ids, source_index = batch["segment_ids"], batch["source_index"]
    response_width = source_index.shape[1]
    eager = _attention_implementation(model) == "eager"
    mask = shared_attention_mask(segment_ids, torch.float32 if eager else None)
    inputs = dict(input_ids=batch["input_ids"], attention_mask=mask,
                  position_ids=batch["position_ids"],
                  # the last prompt column and the responses
                  logits_to_keep=response_width + 1, use_cache=False)
    targets = batch["input_ids"][:, -response_width:]
    response_segments = segment_ids[:, -response_width:]
    if chunk:
        # each token's log-prob: from its source column's state
        hidden = final_hidden(model, **inputs)
        hidden = hidden.gather(
            1, source_index[..., None].expand(-1, -1, hidden.shape[-1]))
        token_logps = masked_target_logps(hidden, head_weight(model), targets,
                                          response_segments != PAD, chunk)
    else:
        # fp32: bf16 log-probs lose several nats over long responses
        logits = model(**inputs).logits.float()
        rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
        # log p = logit[target] − logsumexp(logits), gathered at each token's
        # source column.
        token_logps = (logits[rows, source_index, targets]
                       - torch.logsumexp(logits, dim=-1).gather(1, source_index))
    chosen_mask = (response_segments == CHOSEN).to(token_logps.dtype)
    rejected_mask = (response_segments == REJECTED).to(token_logps.dtype)
    chosen, rejected = ((token_logps * chosen_mask).sum(-1),
                        (token_logps * rejected_mask).sum(-1))
    chosen_tokens, rejected_tokens = chosen_mask.sum(-1), rejected_mask.sum(-1)
    return {"chosen_logps": chosen, "rejected_logps": rejected,
            "chosen_tokens": chosen_tokens, "rejected_tokens": rejected_tokens}
