"""The row layout of a batch: how pairs become rows, and how rows become
log-probabilities.

Two layouts compute the same numbers: ``collate`` + ``concatenated_forward`` (2B rows,
prompt + chosen and prompt + rejected) and ``collate_shared`` + ``shared_forward`` (one
row per pair, the prompt once). A ``Layout`` is chosen once from the config and carries
both halves, so a batch is always read by the forward that matches its collator. It also
carries the other choice every log-prob shares: summed or per-token mean
(``DPOConfig.mean_logps``), the same for the policy and the reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import torch

from .batching import collate
from .chunked_logps import AUTO_VOCAB, chunking_unsupported, vocab_size
from .config import ConfigError
from .data import PreferencePair
from .devices import eval_mode, to_device
from .logprobs import concatenated_forward, per_token_mean
from .prompt_sharing import collate_shared, shared_forward

if TYPE_CHECKING:
    from .config import DPOConfig


@dataclass(frozen=True)
class Layout:
    shared_prompt: bool = False  # one row per pair (prompt sharing) instead of 2B rows
    mean: bool = False           # per-token mean log-probs instead of sums
    chunk: int = 0               # > 0: log-probs from hidden states, this many tokens
                                 # at a time

    @classmethod
    def of(cls, config: "DPOConfig", model: torch.nn.Module) -> "Layout":
        return cls(shared_prompt=config.prompt_sharing, mean=config.mean_logps,
                   chunk=logps_chunk(config, model))

    def collate(self, pairs: Sequence[PreferencePair],
                pad_token_id: int) -> dict[str, torch.Tensor]:
        return (collate_shared if self.shared_prompt else collate)(pairs, pad_token_id)

    def logps(self, model: torch.nn.Module,
              batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``chosen_logps``, ``rejected_logps`` (sums, or per-token means if ``mean``)
        and their token counts, of a batch of this layout."""
        forward = shared_forward if self.shared_prompt else concatenated_forward
        out = forward(model, batch, self.chunk)
        if self.mean:  # the one place the run's per-token choice is applied
            for side in ("chosen", "rejected"):
                out[f"{side}_logps"] = per_token_mean(out[f"{side}_logps"],
                                                      out[f"{side}_tokens"])
        return out

    def usable(self, model: torch.nn.Module, pairs: Sequence[PreferencePair],
               pad_token_id: int) -> "Layout":
        """This layout if ``model`` computes it right on ``pairs``; with prompt sharing
        that the model cannot run (``check_prompt_sharing``), 2B rows, with a
        warning."""
        if not self.shared_prompt:
            return self
        try:
            check_prompt_sharing(model, list(pairs), pad_token_id, self.chunk)
        except ValueError as error:
            # stacklevel: the warning points at the caller of train
            warnings.warn(f"{error}: training with 2B rows instead "
                          "(as prompt_sharing=False)", stacklevel=4)
            return replace(self, shared_prompt=False)
        return self


ROWS = Layout()  # 2B rows, summed log-probs: the layout of the DPO authors' code


def logps_chunk(config: "DPOConfig", model: torch.nn.Module) -> int:
    """Tokens per chunk of the LM head, or 0 for the full logits. ``chunked_logps=None``
    (the default) chunks from a vocabulary of ``AUTO_VOCAB`` tokens on, where the model
    allows it and not under FSDP."""
    if config.chunked_logps is False:
        return 0
    reason = (chunking_unsupported(model)
              or ("FSDP shards the LM head" if config.fsdp else None))
    if config.chunked_logps is None:
        return (config.logps_chunk_tokens
                if reason is None and vocab_size(model) >= AUTO_VOCAB else 0)
    if reason:
        raise ConfigError(f"chunked_logps=True cannot work with this model: {reason}; "
                          "set chunked_logps=False")
    return config.logps_chunk_tokens


@torch.no_grad()
def check_prompt_sharing(model: torch.nn.Module, pairs: list[PreferencePair],
                         pad_token_id: int, chunk: int = 0) -> float:
    """Largest difference (nats) between shared and separate log-probs on ``pairs``;
    raises if it is not tiny.

    Run once before training: a model whose attention ignores custom 4D masks
    (flash-attention 2, say) would otherwise train on silently wrong log-probs.
    ``chunk``: the run's, so that the check needs no more memory than a training step
    (2B full rows of full logits would, at a large vocabulary).
    """
    device = next(model.parameters()).device
    try:
        rows, shared_layout = (Layout(chunk=chunk),
                               Layout(shared_prompt=True, chunk=chunk))
        with eval_mode(model):
            separate = rows.logps(
                model, to_device(rows.collate(pairs, pad_token_id), device))
            shared = shared_layout.logps(
                model, to_device(shared_layout.collate(pairs, pad_token_id), device))
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"this model cannot run prompt sharing ({error}); "
                         "set prompt_sharing=False") from error
    expected = torch.cat([separate["chosen_logps"], separate["rejected_logps"]])
    got = torch.cat([shared["chosen_logps"], shared["rejected_logps"]])
    diff = (got - expected).abs().max().item()
    low_precision = next(model.parameters()).dtype != torch.float32
    tolerance = ((0.05 if low_precision else 1e-3)
                 * (1 + expected.abs().max().item() / 10))
    if not diff <= tolerance:
        raise ValueError(f"prompt sharing changes this model's log-probs by {diff:.3g} "
                         f"nats (tolerance {tolerance:.3g}): its attention does not "
                         "honour the custom mask; set prompt_sharing=False")
    return diff
