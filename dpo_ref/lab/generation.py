"""Chat-templated generation and the measurements the demos make on generations."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from collections import defaultdict
from typing import Any, Sequence

import torch
import transformers

from ..data import encode_prompt, pad_token_id
from ..devices import eval_mode
from ..files import cache_dir, source_hash


@torch.no_grad()
def generate(
    model, tokenizer, prompts: Sequence[Any], max_new_tokens: int = 48,
    do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
    seed: int | None = None, batch_size: int = 32,
) -> list[str]:
    """Responses to ``prompts`` (strings become one user message), greedy unless
    ``do_sample``.

    Prompts of equal token length are batched together, so no padding enters the forward
    pass and a batched greedy answer is the same as a one-at-a-time answer.
    """
    device = next(model.parameters()).device
    # Without a chat template (a base model) encode_prompt reads messages as plain
    # lines of text.
    messages = [[{"role": "user", "content": p}] if isinstance(p, str) else p
                for p in prompts]
    encoded = [encode_prompt(tokenizer, m) for m in messages]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        by_length[len(ids)].append(i)
    if seed is not None:
        torch.manual_seed(seed)
    responses: list[str] = [""] * len(prompts)
    pad = pad_token_id(tokenizer)
    kwargs = (dict(do_sample=do_sample, temperature=temperature, top_p=top_p)
              if do_sample else dict(do_sample=False))
    with eval_mode(model):
        for length, indices in sorted(by_length.items()):
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                input_ids = torch.tensor([encoded[i] for i in chunk], device=device)
                out = model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=max_new_tokens,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=pad, **kwargs)
                for i, row in zip(chunk, out[:, length:]):
                    responses[i] = tokenizer.decode(row,
                                                    skip_special_tokens=True).strip()
    return responses


def generate_once(model, tokenizer, prompts: Sequence[Any], **settings) -> list[str]:
    """``generate(model, tokenizer, prompts, **settings)``, drawn once per machine and
    kept in the toy's cache (``samples/``).

    Two pages that draw the same samples from the same model (the frontier and the
    family studies each draw 8,192 from the starting model) then pay for them once. The
    file is named by a hash of everything that decides the answers: the weights, the
    tokenizer's vocabulary and chat template, the prompts, every setting (defaults
    included), dpo_ref's source, the thread count, the device and the torch and
    transformers versions; so a changed model, prompt, setting or package never reads
    another's samples.
    """
    key = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        key.update(name.encode())
        key.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    bound = inspect.signature(generate).bind(model, tokenizer, prompts, **settings)
    bound.apply_defaults()
    arguments = {k: v for k, v in bound.arguments.items()
                 if k not in ("model", "tokenizer")}
    described = [tokenizer.get_vocab(), getattr(tokenizer, "chat_template", None),
                 arguments, source_hash(), torch.get_num_threads(),
                 str(next(model.parameters()).device), torch.__version__,
                 transformers.__version__]
    key.update(json.dumps(described, sort_keys=True, default=str).encode())
    path = cache_dir() / "samples" / f"{key.hexdigest()[:40]}.json"
    if path.exists():
        return json.loads(path.read_text())
    responses = generate(model, tokenizer, prompts, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: a page running beside this one never reads half.
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as f:
        json.dump(responses, f)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the cache is not
    os.replace(tmp, path)
    return responses


def contains_rate(responses: Sequence[str], target: str) -> float:
    """Share of responses that contain ``target`` (case-insensitive)."""
    if not responses:
        raise ValueError("no responses to score")
    return sum(target.lower() in r.lower() for r in responses) / len(responses)


def unchanged_rate(before: Sequence[str], after: Sequence[str]) -> float:
    """Share of responses that are exactly the same before and after training."""
    if len(before) != len(after) or not before:
        raise ValueError("before and after must be non-empty and of the same length")
    return sum(a == b for a, b in zip(before, after)) / len(before)


def distinct_n(responses: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the responses' words: falls when generations
    repeat."""
    grams = [tuple(w[i : i + n]) for w in (r.split() for r in responses)
             for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def sequence_kl(policy, reference, tokenizer, prompts: Sequence[Any],
                responses: Sequence[str], batch_size: int = 64) -> float:
    """Mean over prompts of Σ_t KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) along the
    given responses.

    The exact per-token KL between the two next-token distributions, summed over the
    response tokens (usually the reference's own greedy answers): how far training moved
    the policy on these inputs. Sequences are scored several at a time, padded on the
    right: a causal model's outputs at the real positions do not depend on what follows.
    """
    device = next(policy.parameters()).device
    rows = []  # (token ids, first and last position that predicts a response token)
    for prompt, response in zip(prompts, responses):
        messages = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                    else prompt)
        prompt_ids = encode_prompt(tokenizer, messages)
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + response_ids + [tokenizer.eos_token_id]
        rows.append((ids, len(prompt_ids) - 1, len(ids) - 1))
    # at most 2**25 logits (128 MB in fp32) a batch, so a 49k vocabulary fits too
    longest = max(len(ids) for ids, _, _ in rows)
    step = max(1, min(batch_size, 2**25 // (longest * policy.config.vocab_size)))
    total, pad = 0.0, pad_token_id(tokenizer)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        width = max(len(ids) for ids, _, _ in chunk)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _, _ in chunk],
                           device=device)
        lengths = torch.tensor([[len(i)] for i, _, _ in chunk], device=device)
        mask = (torch.arange(width, device=device) < lengths).long()  # 0 on the padding
        logp = policy(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        logq = reference(input_ids=ids, attention_mask=mask).logits
        logq = logq.float().log_softmax(-1)
        per_position = (logp.exp() * (logp - logq)).sum(-1)  # KL at each position
        for row, (_, first, end) in enumerate(chunk):
            total += per_position[row, first:end].sum().item()
    return total / len(prompts)
