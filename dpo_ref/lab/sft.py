"""Supervised fine-tuning on the chosen responses: the paper's Preferred-FT baseline.

Rafailov et al. 2023 (arXiv 2305.18290, §6) compare DPO with *Preferred-FT*,
"supervised fine-tuning on the chosen completions": maximise log π_θ(y_w | x) and
ignore y_l. It uses the same records, the same tokenisation and the same batches as DPO
(``dpo_ref.data``, ``dpo_ref.batching.batches``), so the two methods differ only in the
loss: here the mean negative log-likelihood per chosen response token,
``dpo_ref.logprobs.response_nll``. There is no reference model and no β.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..batching import batches
from ..config import ConfigError
from ..data import PreferenceData, pad_token_id, prepare_pairs
from ..logprobs import response_nll


@dataclass
class SFTConfig:
    lr: float = 1e-4
    max_steps: int = 100
    batch_size: int = 8
    max_length: int = 512
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    # call eval_fn every N steps (and before the first and after the last);
    # 0: only at the end
    eval_every: int = 0
    eval_on_start: bool = True  # with eval_every, also call eval_fn at step 0

    def __post_init__(self):
        checks = [
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class SFTResult:
    model: torch.nn.Module
    # per step: loss (nats per token)
    history: list[dict[str, float]] = field(default_factory=list)
    # what eval_fn returned, with the step
    eval_history: list[dict[str, float]] = field(default_factory=list)


def chosen_nll(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood per chosen response token of a collated preference
    batch.

    The collator stacks the B chosen rows first and the B rejected rows after them; only
    the chosen half is run through the model.
    """
    n = batch["index"].shape[0]
    return response_nll(model, {k: batch[k][:n]
                                for k in ("input_ids", "attention_mask", "loss_mask")})


def train_sft(
    model, tokenizer, train_data: Any, config: SFTConfig,
    eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> SFTResult:
    """Fine-tune ``model`` in place on the chosen responses of ``train_data`` (any
    source ``prepare_pairs`` accepts, or a :class:`PreferenceData`); the rejected
    responses are never used.
    """
    if not isinstance(train_data, PreferenceData):
        train_data = prepare_pairs(train_data, tokenizer, config.max_length)
    if config.batch_size > len(train_data):
        raise ConfigError(f"batch_size {config.batch_size} is larger than the "
                          f"{len(train_data)} training pairs")
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    if any(p.dtype != torch.float32
           for p in model.parameters() if p.is_floating_point()):
        # fp32 master weights, as in dpo_ref.policy: lr × update is below bf16's
        # resolution
        model.float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    result = SFTResult(model=model)

    def run_evaluation(step: int) -> None:
        if eval_fn is not None:
            result.eval_history.append({"step": step, **eval_fn(model)})

    if config.eval_every and config.eval_on_start:
        run_evaluation(0)
    data_iter = batches(train_data, config.batch_size, pad_token_id(tokenizer),
                        config.seed, device)
    model.train()
    for step in range(1, config.max_steps + 1):
        loss = chosen_nll(model, next(data_iter))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite SFT loss at step {step}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.history.append({"step": step, "loss": loss.item()})
        if (step == config.max_steps
                or (config.eval_every and step % config.eval_every == 0)):
            run_evaluation(step)
    model.eval()
    return result
