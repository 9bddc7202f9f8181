"""The DPO training loop: configuration, one loop read top to bottom, evaluation, saving."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from .checkpoint import latest_checkpoint, load_checkpoint, restore, save_checkpoint
from .data import PreferenceData, collate, pad_token_id, prepare_pairs
from .distributed import (Processes, accelerate_fsdp_settings, all_true, barrier, full_tensor, gathered_copy,
                          init_processes, launched_world_size, mean_over_processes, shard, wrap)
from .logprobs import pair_logps
from .losses import LOSS_TYPES, dpo_loss
from .prompt_sharing import check_prompt_sharing, collate_shared
from .reference import CopyReference, LoraReference, PrecomputedReference

REFERENCE_STRATEGIES = ("copy", "lora", "precomputed")


class ConfigError(ValueError):
    """A training configuration that cannot work; raised before any model is touched."""


@dataclass
class DPOConfig:
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0          # ε of cdpo / robust
    length_normalize: bool | None = None  # None: per-token mean for ipo (as TRL), sum otherwise (paper)
    reference: str = "copy"               # copy | lora | precomputed
    lr: float = 5e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "linear"           # linear | cosine | constant (after warm-up)
    batch_size: int = 8                   # pairs per optimizer step, before accumulation
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    prompt_sharing: bool = True           # one row per pair: the prompt runs once for both responses
    group_by_length: bool = False         # batch pairs of similar length (less padding; less random batches)
    max_length: int = 512
    max_steps: int | None = None          # if unset, run `epochs` over the data
    epochs: float = 1.0
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"               # auto | fp32 | bf16 | fp16
    gradient_checkpointing: bool = False
    lora: bool = False                    # train LoRA adapters (always on with reference="lora")
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: Any = "all-linear"
    merge_lora: bool = True               # save merged weights that plain transformers loads
    fsdp: bool = False                    # shard weights, gradients, optimizer state over the processes
    fsdp_reshard_after_forward: bool = True  # free gathered layers after forward (FULL_SHARD); False: SHARD_GRAD_OP
    log_every: int = 1                    # metrics are read off the device only at these steps
    eval_every: int = 0                   # 0: evaluate only at the end (if eval data is given)
    skip_invalid: bool = False            # skip (and count) malformed records instead of failing
    output_dir: str | None = None
    save_every: int = 0                   # checkpoint every N steps (and at the end) into output_dir
    keep_checkpoints: int = 2
    resume: bool = False                  # continue from the latest checkpoint in output_dir
    progress: bool = True

    def __post_init__(self):
        try:  # `accelerate launch` with an FSDP config passes its settings in environment variables
            launcher_fsdp = accelerate_fsdp_settings()
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if launcher_fsdp:
            self.fsdp = True
            self.fsdp_reshard_after_forward = launcher_fsdp["reshard_after_forward"]
            self.gradient_checkpointing = self.gradient_checkpointing or launcher_fsdp["activation_checkpointing"]
        checks = [
            (self.beta > 0, f"beta must be > 0, got {self.beta}"),
            (self.loss_type in LOSS_TYPES, f"unknown loss_type {self.loss_type!r}; choose one of {', '.join(LOSS_TYPES)}"),
            (self.reference in REFERENCE_STRATEGIES, f"unknown reference {self.reference!r}; choose one of {', '.join(REFERENCE_STRATEGIES)}"),
            (0 <= self.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1 and self.grad_accum_steps >= 1, "batch_size and grad_accum_steps must be >= 1"),
            (self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.lr_schedule in ("linear", "cosine", "constant"), f"unknown lr_schedule {self.lr_schedule!r}"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"), f"unknown precision {self.precision!r}"),
            (self.log_every >= 1 and self.eval_every >= 0, "log_every must be >= 1 and eval_every >= 0"),
            (self.save_every >= 0 and self.keep_checkpoints >= 1, "save_every must be >= 0 and keep_checkpoints >= 1"),
            (not (self.save_every or self.resume) or self.output_dir, "save_every and resume need an output_dir"),
            (self.batch_size % launched_world_size() == 0,
             f"batch_size {self.batch_size} (the global batch) must be a multiple of the {launched_world_size()} processes"),
            (not self.fsdp or launched_world_size() >= 2, "fsdp shards the model over several processes: launch with "
             "torchrun --nproc_per_node N or accelerate launch --num_processes N (N >= 2), or drop fsdp"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DPOConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**values)

    @property
    def use_lora(self) -> bool:
        return self.lora or self.reference == "lora"

    @property
    def mean_logps(self) -> bool:
        return self.loss_type == "ipo" if self.length_normalize is None else self.length_normalize


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    data_report: str = ""


# ---------------------------------------------------------------- device and precision


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():  # under torchrun/accelerate each process takes its own GPU
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU; on CUDA bf16 where supported, else fp16 (a Colab T4 has no bf16)."""
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast_for(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------- pieces of the loop


def batches(data: PreferenceData, batch_size: int, pad_id: int, seed: int, device: torch.device,
            skip: int = 0, procs: Processes = Processes(), collate_fn: Callable = collate,
            group_by_length: bool = False) -> Iterator[dict]:
    """Endless shuffled batches, a new permutation each epoch, moved to ``device``.

    The order depends only on the seed, so skipping the first ``skip`` batches (to resume) gives
    exactly the batches an uninterrupted run would have seen next. With several processes each takes
    every ``world``-th pair of the same global batch. ``group_by_length`` sorts each window of
    ``GROUP_WINDOW`` batches by pair length before cutting it into batches (then shuffles those
    batches), so a batch holds pairs of similar length and carries little padding.
    """
    generator = torch.Generator().manual_seed(seed)
    per_epoch = len(data) // batch_size  # drop the ragged tail
    while True:
        order = torch.randperm(len(data), generator=generator).tolist()[: per_epoch * batch_size]
        if group_by_length:
            order = _grouped_by_length(order, data, batch_size, generator)
        first = min(skip, per_epoch)
        skip -= first
        for b in range(first, per_epoch):
            indices = order[b * batch_size : (b + 1) * batch_size][procs.rank :: procs.world]
            batch = collate_fn([data.pairs[i] for i in indices], pad_id)
            yield to_device(batch, device)


GROUP_WINDOW = 32  # batches sorted together by group_by_length


def _grouped_by_length(order: list[int], data: PreferenceData, batch_size: int, generator) -> list[int]:
    def length(i: int) -> int:
        pair = data.pairs[i]
        return len(pair.prompt_ids) + len(pair.chosen_ids) + len(pair.rejected_ids)

    grouped = []
    window = GROUP_WINDOW * batch_size
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=length)
        cut = [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
        grouped += [i for b in torch.randperm(len(cut), generator=generator).tolist() for i in cut[b]]
    return grouped


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cuda":  # pinned host memory lets the copy overlap with compute
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def pair_metrics(losses, chosen_rewards, rejected_rewards, policy) -> dict[str, torch.Tensor]:
    """TRL's metric names, as device tensors (no host synchronisation here)."""
    return {
        "loss": losses.mean().detach(),
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "logps/chosen": policy["chosen_logps"].detach().mean(),
        "logps/rejected": policy["rejected_logps"].detach().mean(),
    }


def collate_for(config: DPOConfig) -> Callable:
    return collate_shared if config.prompt_sharing else collate


def make_reference(config: DPOConfig, model, data: PreferenceData, pad_id: int, device, autocast):
    if config.reference == "lora":
        return LoraReference(model, config.mean_logps)
    if config.reference == "precomputed":
        batches_in_order = (
            to_device(collate_for(config)(data.pairs[i : i + config.batch_size], pad_id), device)
            for i in range(0, len(data), config.batch_size)
        )
        # Fresh adapters change nothing yet, but be exact: with LoRA, use the base model.
        with model.disable_adapter() if config.use_lora else contextlib.nullcontext():
            return PrecomputedReference.from_batches(model, batches_in_order, len(data), config.mean_logps, autocast)
    return CopyReference(model, config.mean_logps)


def wrap_lora(model, config: DPOConfig):
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora_config)


def batch_loss(model, reference, batch: dict[str, torch.Tensor], config: DPOConfig, autocast):
    """Per-pair losses of one batch (policy forward, reference log-probs, loss) and its metrics."""
    with autocast():
        policy = pair_logps(model, batch, config.mean_logps)
        ref_chosen, ref_rejected = reference.logps(batch)
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        policy["chosen_logps"], policy["rejected_logps"], ref_chosen, ref_rejected,
        config.beta, config.loss_type, config.label_smoothing,
    )
    return losses, pair_metrics(losses, chosen_rewards, rejected_rewards, policy)


@torch.no_grad()
def evaluate(model, reference, data: PreferenceData, config: DPOConfig, pad_id: int, device, autocast) -> dict[str, float]:
    """Mean DPO metrics over ``data`` (no gradients), named ``eval/<metric>``."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(data), config.batch_size):
        chunk = data.pairs[start : start + config.batch_size]
        _, metrics = batch_loss(model, reference, to_device(collate_for(config)(chunk, pad_id), device), config, autocast)
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + value.item() * len(chunk)
    model.train(was_training)
    return {f"eval/{name}": total / len(data) for name, total in sums.items()}


# ---------------------------------------------------------------- the loop


def train(model, tokenizer, train_data, config: DPOConfig, eval_data=None,
          eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None) -> TrainResult:
    """Train ``model`` (the policy, which also defines π_ref) with DPO on ``train_data``.

    ``train_data``/``eval_data``: a :class:`PreferenceData`, a JSONL path, a ``datasets.Dataset`` or a
    list of records (see ``dpo_ref.data``). ``eval_fn(model)`` may add measurements of your own (say,
    generations) to each evaluation. Evaluations run every ``eval_every`` steps (and before the first
    step) and at the end. Returns the trained model and the logged metrics. ``model`` is trained in
    place (``result.model`` is the same object, wrapped with LoRA if asked): pass a
    ``copy.deepcopy`` to keep the original. Under FSDP it stays sharded, and evaluation and ``eval_fn``
    run on every process in step (each forward needs all the shards); the saved folder is whole.
    """
    # --- setup: data, device, precision, model, reference, optimizer
    if not isinstance(train_data, PreferenceData):
        train_data = prepare_pairs(train_data, tokenizer, config.max_length, config.skip_invalid)
    if eval_data is not None and not isinstance(eval_data, PreferenceData):
        eval_data = prepare_pairs(eval_data, tokenizer, config.max_length, config.skip_invalid)
    if config.batch_size > len(train_data):
        raise ConfigError(f"batch_size {config.batch_size} is larger than the {len(train_data)} training pairs")
    steps = config.max_steps or math.ceil(config.epochs * len(train_data) / (config.batch_size * config.grad_accum_steps))

    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    procs = init_processes(device)
    dtype = resolve_precision(config.precision, device)
    autocast = autocast_for(device, dtype)
    pad_id = pad_token_id(tokenizer)
    if not config.fsdp:  # fully_shard moves the model to the device one layer at a time, sharding each (below)
        model.to(device)
    if not config.use_lora and any(p.dtype != torch.float32 for p in model.parameters() if p.is_floating_point()):
        # Full fine-tuning needs fp32 master weights: lr × update is below bf16's resolution for most
        # weights. Autocast still runs the matmuls in bf16/fp16.
        model.float()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if config.use_lora:
            model.enable_input_require_grads()
    if config.use_lora:
        model = wrap_lora(model, config)
    model.train()
    reference = None
    if config.fsdp:  # shard in place: the policy, and its frozen copy if that is the reference (copied first)
        reference = make_reference(config, model, train_data, pad_id, device, autocast) if config.reference == "copy" else None
        for module in [model] + ([reference.model] if reference else []):
            shard(module, device, config.fsdp_reshard_after_forward)
    if config.prompt_sharing:
        try:
            check_prompt_sharing(model, train_data.pairs[: min(4, len(train_data))], pad_id)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    reference = reference or make_reference(config, model, train_data, pad_id, device, autocast)
    trained = model if config.fsdp else wrap(model, procs, device)  # DDP when launched with several processes

    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_scheduler(config.lr_schedule if config.lr_schedule != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=steps)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    out_dir = Path(config.output_dir) if config.output_dir and procs.is_main else None  # only rank 0 writes
    result = TrainResult(model=model, data_report=train_data.report())
    running: dict[str, torch.Tensor] = {}
    n_running = 0
    grad_norms: list[torch.Tensor] = []

    # --- resume: weights, optimizer, scheduler, scaler, RNG, data position and unlogged metrics
    start_step = 0
    latest = latest_checkpoint(Path(config.output_dir)) if config.resume else None
    checkpoint = load_checkpoint(latest) if latest else None
    if checkpoint:
        restore(checkpoint, model, optimizer, scheduler, scaler)
        start_step = checkpoint.step
        running = {k[len("running."):]: v.to(device) for k, v in checkpoint.tensors.items() if k.startswith("running.")}
        saved_norms = running.pop("grad_norms", None)
        grad_norms = list(saved_norms.unbind()) if saved_norms is not None else []
        n_running = checkpoint.meta["n_running"]
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "eval_metrics.jsonl"):  # keep what was logged up to the checkpoint
            path = out_dir / name
            kept = [l for l in path.read_text().splitlines() if json.loads(l)["step"] <= start_step] if checkpoint and path.exists() else []
            path.write_text("".join(l + "\n" for l in kept))
            (result.history if name == "metrics.jsonl" else result.eval_history).extend(json.loads(l) for l in kept)
    data_iter = batches(train_data, config.batch_size, pad_id, config.seed, device,
                        skip=start_step * config.grad_accum_steps, procs=procs,
                        collate_fn=collate_for(config), group_by_length=config.group_by_length)
    bar = tqdm(range(start_step + 1, steps + 1), desc="DPO", disable=not (config.progress and procs.is_main),
               initial=start_step, total=steps)
    start_time = time.perf_counter()

    def run_evaluation(step: int) -> None:
        # Rank 0 evaluates alone, except under FSDP, where each forward needs every process's shards.
        if (eval_data is None and eval_fn is None) or not (procs.is_main or config.fsdp):
            return
        record = {"step": step}
        if eval_data is not None:
            record.update(evaluate(model, reference, eval_data, config, pad_id, device, autocast))
        if eval_fn is not None:
            record.update(eval_fn(model))
        if not procs.is_main:
            return
        result.eval_history.append(record)
        if out_dir:
            with open(out_dir / "eval_metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    if config.eval_every and start_step == 0:
        run_evaluation(0)
    for step in bar:
        # --- one optimizer step = grad_accum_steps micro-batches
        step_loss = 0
        for _ in range(config.grad_accum_steps):
            losses, metrics = batch_loss(trained, reference, next(data_iter), config, autocast)
            loss = losses.mean() / config.grad_accum_steps
            (scaler.scale(loss) if scaler else loss).backward()
            step_loss = step_loss + loss.detach()
            for name, value in metrics.items():
                running[name] = running.get(name, 0) + value
            n_running += 1

        # --- clip, check, step, schedule
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        # Stop before a non-finite update reaches the weights (one small host read per step). With fp16,
        # GradScaler skips steps whose gradients overflowed (normal early on): only the loss is checked.
        finite = torch.isfinite(step_loss) & (torch.isfinite(grad_norm) | (scaler is not None))
        if not all_true(finite, procs):
            kept = f"; the latest checkpoint is in {config.output_dir}/checkpoints" if config.save_every else ""
            raise FloatingPointError(f"non-finite loss or gradient at step {step} (loss {float(step_loss):.4g}, "
                                     f"grad norm {float(grad_norm):.4g}); this update was not applied{kept}")
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        grad_norms.append(grad_norm)

        # --- log (metrics are read back from the device only here)
        if step % config.log_every == 0 or step == steps:
            record = {"step": step, "epoch": step * config.batch_size * config.grad_accum_steps / len(train_data)}
            averaged = mean_over_processes({name: total / n_running for name, total in running.items()}, procs)
            record.update({name: value.item() for name, value in averaged.items()})
            norms = torch.stack(grad_norms).float().cpu()
            finite = torch.isfinite(norms)  # all finite, except fp16 steps that GradScaler skipped
            record["grad_norm"] = norms[finite].mean().item() if finite.any() else float("nan")
            if scaler is not None:
                record["skipped_steps"] = int((~finite).sum())
            record["learning_rate"] = scheduler.get_last_lr()[0]
            record["elapsed_s"] = time.perf_counter() - start_time
            result.history.append(record)
            running, n_running, grad_norms = {}, 0, []
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['rewards/accuracies']:.2f}")
            if out_dir:
                with open(out_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")

        if step == steps or (config.eval_every and step % config.eval_every == 0):
            run_evaluation(step)

        if config.save_every and (step % config.save_every == 0 or step == steps):
            # Metric sums not yet logged differ between processes: keep their mean, which every process
            # restores on resume (a collective, so all come here). Under FSDP all gather the shards too.
            unlogged = {f"running.{k}": v for k, v in (mean_over_processes(running, procs) if running else {}).items()}
            if grad_norms:
                unlogged["running.grad_norms"] = torch.stack(grad_norms)
            if procs.is_main or config.fsdp:
                save_checkpoint(out_dir, step, model, optimizer, scheduler, scaler, unlogged,
                                {"n_running": n_running, "config": asdict(config)}, keep=config.keep_checkpoints,
                                write=procs.is_main)

    whole = gathered_copy(model, procs) if config.fsdp and config.output_dir else model
    if out_dir:
        save(whole, tokenizer, out_dir, config)
    barrier(procs)
    return result


def save(model, tokenizer, output_dir: str | Path, config: DPOConfig) -> None:
    """Hugging Face format (safetensors) that ``from_pretrained(output_dir)`` loads.

    A LoRA policy is merged into its base weights when ``config.merge_lora`` (the default), else its
    adapters are saved with peft. ``dpo_config.json`` is written last: its presence marks a finished run.
    """
    output_dir = Path(output_dir)
    if config.use_lora and config.merge_lora:
        import copy

        copy.deepcopy(model).merge_and_unload().save_pretrained(output_dir)  # keep the live model a PeftModel
    else:
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "dpo_config.json").write_text(json.dumps(asdict(config), indent=2))
