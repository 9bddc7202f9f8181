"""Response log-probabilities without the full-vocabulary logits.

``token_logps`` (``dpo_ref.logprobs``) takes the logits of every position, B × T × V
floats: at Qwen2.5's 151,936-token vocabulary that is 2.4 GB in fp32 for 4 pairs of
1,000 tokens, and autograd keeps more tensors of that size for the backward pass. Only
the response tokens' log-probabilities enter the loss, and each needs one logit and one
log-sum-exp. So here the model's final hidden states are taken at the response positions
only, and the LM head runs over them a chunk of tokens at a time:

    log p(y_t) = h_t · w_{y_t} − logsumexp_v(h_t · w_v)

``TargetLogps`` keeps nothing of size V: its backward recomputes each chunk's logits and
applies d log p / d logits = onehot(y_t) − softmax, so the peak memory of this step is
one chunk's logits instead of all of them. The price is one more matmul with the LM head
per chunk (the recomputation).

The hidden states come from a forward pre-hook on the model's output embedding
(``lm_head``): it keeps its input and hands the head an empty slice, so the model's own
forward (with its DDP/PEFT wrappers) runs unchanged and computes no logits. Models whose
head is not a plain linear layer, or whose logits are transformed after it
(soft-capping, scaling), keep the full-logits path (``chunking_unsupported``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

# chunk automatically from this vocabulary size on (SmolLM2: 49,152; Qwen2.5: 151,936)
AUTO_VOCAB = 32_768


class TargetLogps(torch.autograd.Function):
    """log softmax(hidden @ weightᵀ)[target] per row, ``chunk`` rows at a time, in
    fp32."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk: int):
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            logits = (hidden[start : start + chunk] @ weight.T).float()
            target = targets[start : start + chunk, None]
            out[start : start + chunk] = (logits.gather(1, target)[:, 0]
                                          - torch.logsumexp(logits, dim=-1))
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, targets = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (torch.zeros(weight.shape, dtype=torch.float32,
                                   device=weight.device)
                       if ctx.needs_input_grad[1] else None)
        for start in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[start : start + ctx.chunk]
            logits = (h @ weight.T).float()
            g = grad_out[start : start + ctx.chunk, None]
            # d/dlogits of
            # g · (logit[target] − logsumexp) = g · (onehot(target) − softmax)
            grad_logits = -torch.softmax(logits, dim=-1) * g
            grad_logits.scatter_add_(1, targets[start : start + ctx.chunk, None], g)
            grad_logits = grad_logits.to(h.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + ctx.chunk] = (
                    grad_logits @ weight.to(h.dtype))
            if grad_weight is not None:
                grad_weight += (grad_logits.T @ h).float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def target_logps(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                 chunk: int = 64) -> torch.Tensor:
    """Log-probabilities of ``targets`` (N,) given the final hidden states (N, H) and
    the LM head's weight (V, H), never holding more than ``chunk`` × V logits."""
    # matmuls in the autocast dtype, as the head's own
    if torch.is_autocast_enabled(hidden.device.type):
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight_used = hidden.to(dtype), weight.to(dtype)
    else:
        weight_used = (weight if weight.dtype == hidden.dtype
                       else weight.to(hidden.dtype))
    return TargetLogps.apply(hidden, weight_used, targets, chunk)


def masked_target_logps(hidden: torch.Tensor, weight: torch.Tensor,
                        targets: torch.Tensor, mask: torch.Tensor,
                        chunk: int) -> torch.Tensor:
    """(rows, T) log-probs of ``targets`` where ``mask`` is set, zero elsewhere, from
    hidden states (rows, T, H): only the masked positions go through the LM head."""
    values = target_logps(hidden[mask], weight, targets[mask], chunk)
    return torch.zeros(mask.shape, dtype=values.dtype,
                       device=values.device).masked_scatter(mask, values)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT


def chunking_unsupported(model: torch.nn.Module) -> str | None:
    """Why this model's log-probs cannot be chunked (None: they can)."""
    base = _unwrapped(model)
    head = (base.get_output_embeddings() if hasattr(base, "get_output_embeddings")
            else None)
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return (f"its output layer is a {type(head).__name__}, "
                "not a plain linear layer without bias")
    config = getattr(base, "config", None)
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            return f"its config transforms the logits ({name})"
    return None


def vocab_size(model: torch.nn.Module) -> int:
    return _unwrapped(model).get_output_embeddings().weight.shape[0]


@contextlib.contextmanager
def head_inputs(model: torch.nn.Module) -> Iterator[dict]:
    """While inside, the model's LM head computes nothing: ``captured["hidden"]``
    receives its input (the final, normalised hidden states) and the model returns empty
    logits."""
    head = _unwrapped(model).get_output_embeddings()
    captured: dict = {}

    def keep_input(module, args):
        captured["hidden"] = args[0]
        return (args[0][..., :0, :],)  # zero positions: the head's matmul costs nothing

    handle = head.register_forward_pre_hook(keep_input)
    try:
        yield captured
    finally:
        handle.remove()


def final_hidden(model: torch.nn.Module, **inputs) -> torch.Tensor:
    """The model's final hidden states (its LM head's input), from a forward that
    computes no logits."""
    with head_inputs(model) as captured:
        model(**inputs)
    return captured["hidden"]


def head_weight(model: torch.nn.Module) -> torch.nn.Parameter:
    return _unwrapped(model).get_output_embeddings().weight
