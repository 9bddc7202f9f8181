"""Training configuration: plain values, each checked once, before any model is touched.

The allowed values of each choice are defined here once; the command line offers the
same ones. Nothing here reads the environment: what a launcher (torchrun,
``accelerate launch``) adds is read where processes are handled,
``dpo_ref.distributed.from_launcher``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .devices import DTYPES
from .losses import (LOSS_SETTINGS, PER_TOKEN, REFERENCE_FREE, SETTINGS, VARIANTS,
                     check_loss_settings)

REFERENCES = ("copy", "lora", "precomputed", "tr", "none")
PRECISIONS = ("auto", *DTYPES)
LR_SCHEDULES = ("linear", "cosine", "constant")


class ConfigError(ValueError):
    """A training configuration that cannot work; raised before any model is touched."""


@dataclass
class DPOConfig:
    beta: float = 0.1
    loss_type: str = "sigmoid"            # one of losses.LOSS_TYPES
    length_normalize: bool | None = None  # None: per-token means where the loss
                                          # asks for them (losses.VARIANTS)
    # the variants' settings: defaults and meaning in losses.SETTINGS
    label_smoothing: float = SETTINGS["label_smoothing"].default
    rpo_alpha: float = SETTINGS["rpo_alpha"].default
    dpop_lambda: float = SETTINGS["dpop_lambda"].default
    rdpo_alpha: float = SETTINGS["rdpo_alpha"].default
    simpo_gamma: float = SETTINGS["simpo_gamma"].default
    reference: str = "copy"               # copy | lora | precomputed | tr | none
                                          # (see reference.py)
    ref_model_mixup_alpha: float = 0.6    # α of reference="tr":
                                          # θ_ref ← α·θ + (1 − α)·θ_ref
    ref_model_sync_steps: int = 512       # τ of reference="tr": optimizer steps
                                          # between two updates
    lr: float = 5e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "linear"           # linear | cosine | constant (after warm-up)
    batch_size: int = 8                   # pairs per optimizer step,
                                          # before accumulation
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    prompt_sharing: bool = True           # one row per pair: the prompt runs once
                                          # for both responses
    chunked_logps: bool | None = None     # log-probs without full logits;
                                          # None: from a 32k vocabulary on
    logps_chunk_tokens: int = 64          # tokens per chunk of the LM head
                                          # (its logits: 64 × V floats)
    group_by_length: bool = False         # batch pairs of similar length
                                          # (less padding; less random batches)
    max_length: int = 512
    max_steps: int | None = None          # if unset, run `epochs` over the data
    epochs: float = 1.0
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"               # auto | fp32 | bf16 | fp16
    gradient_checkpointing: bool = False
    lora: bool = False                    # train LoRA adapters
                                          # (always on with reference="lora")
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: Any = "all-linear"
    merge_lora: bool = True               # save merged weights that plain
                                          # transformers loads
    fsdp: bool = False                    # shard weights, gradients, optimizer state
                                          # over the processes
    fsdp_reshard_after_forward: bool = True  # free gathered layers after forward
                                             # (FULL_SHARD); False: SHARD_GRAD_OP
    log_every: int = 1                    # metrics are read off the device
                                          # only at these steps
    eval_every: int = 0                   # 0: evaluate only at the end
                                          # (if eval data is given)
    eval_on_start: bool = True            # eval_every also at step 0 (TRL's name)
    skip_invalid: bool = False            # skip (and count) malformed records
                                          # instead of failing
    output_dir: str | None = None
    save_every: int = 0                   # checkpoint every N steps
                                          # (and at the end) into output_dir
    keep_checkpoints: int = 2
    resume: bool = False                  # continue from the latest checkpoint
                                          # in output_dir
    progress: bool = True

    def __post_init__(self):
        # β, loss_type, ε and the variants' coefficients are checked where the loss
        # is defined
        try:
            check_loss_settings(**self.loss_settings)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        checks = [
            (self.reference in REFERENCES,
             f"unknown reference {self.reference!r}; "
             f"choose one of {', '.join(REFERENCES)}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1 and self.grad_accum_steps >= 1,
             "batch_size and grad_accum_steps must be >= 1"),
            (self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.logps_chunk_tokens >= 1,
             f"logps_chunk_tokens must be >= 1, got {self.logps_chunk_tokens}"),
            (self.max_steps is None or self.max_steps >= 1,
             f"max_steps must be >= 1, got {self.max_steps}"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (self.warmup_steps >= 0,
             f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"unknown lr_schedule {self.lr_schedule!r}; "
             f"choose one of {', '.join(LR_SCHEDULES)}"),
            (self.precision in PRECISIONS,
             f"unknown precision {self.precision!r}; "
             f"choose one of {', '.join(PRECISIONS)}"),
            (self.log_every >= 1 and self.eval_every >= 0,
             "log_every must be >= 1 and eval_every >= 0"),
            (self.save_every >= 0 and self.keep_checkpoints >= 1,
             "save_every must be >= 0 and keep_checkpoints >= 1"),
            (not (self.save_every or self.resume) or self.output_dir,
             "save_every and resume need an output_dir"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.check_reference()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DPOConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**values)

    def check_reference(self) -> None:
        """The reference a loss needs, and TR-DPO's settings: simpo and orpo require
        reference="none" (they are refused with any other reference rather than loading
        a model they never read)."""
        loss, ref = self.loss_type, self.reference
        defaults = {f.name: f.default for f in fields(self)}
        tr_fields = ("ref_model_mixup_alpha", "ref_model_sync_steps")
        moved = any(getattr(self, name) != defaults[name] for name in tr_fields)
        checks = [
            (loss not in REFERENCE_FREE or ref == "none",
             f"loss_type {loss!r} uses no reference model: set reference='none' "
             f"(the {ref!r} reference would be built and never read)"),
            (ref != "none" or loss in REFERENCE_FREE,
             f"reference='none' works only with the reference-free loss types "
             f"({', '.join(REFERENCE_FREE)}); loss_type {loss!r} needs π_ref"),
            (loss not in PER_TOKEN or self.length_normalize is not False,
             f"loss_type {loss!r} is defined on per-token mean log-probs: "
             "length_normalize must be None or True"),
            (0 < self.ref_model_mixup_alpha <= 1,
             "ref_model_mixup_alpha must be in (0, 1], "
             f"got {self.ref_model_mixup_alpha}"),
            (self.ref_model_sync_steps >= 1,
             f"ref_model_sync_steps must be >= 1, got {self.ref_model_sync_steps}"),
            (ref == "tr" or not moved,
             "ref_model_mixup_alpha and ref_model_sync_steps are TR-DPO's, read only "
             f"with reference='tr'; the {ref!r} reference never moves"),
            (ref != "tr" or not self.lora,
             "reference='tr' mixes whole weights; with lora=True it would mix the "
             "adapters' A and B, and the product B·A of mixed adapters is not the mix "
             "of their products: train without lora"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def loss_settings(self) -> dict[str, Any]:
        """``preference_loss``'s keyword arguments that come from the config
        (``losses.LOSS_SETTINGS``)."""
        return {name: getattr(self, name) for name in LOSS_SETTINGS}

    @property
    def use_lora(self) -> bool:
        return self.lora or self.reference == "lora"

    @property
    def mean_logps(self) -> bool:
        if self.length_normalize is None:
            variant = VARIANTS[self.loss_type]
            return variant.per_token or variant.mean_by_default
        return self.length_normalize

    def total_steps(self, n_pairs: int) -> int:
        """Optimizer steps of a run over ``n_pairs``: ``max_steps``, else ``epochs``
        over the data."""
        if self.batch_size > n_pairs:
            raise ConfigError(f"batch_size {self.batch_size} is larger than the "
                              f"{n_pairs} training pairs")
        if self.max_steps:
            return self.max_steps
        return math.ceil(self.epochs * n_pairs
                         / (self.batch_size * self.grad_accum_steps))
