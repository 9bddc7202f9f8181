"""The DPO training loop, read top to bottom: set-up, then one plain loop of optimizer
steps.

Each set-up piece lives in the module that owns it (``policy``, ``reference``,
``checkpoint``, ``metrics``, ``distributed``); what stays here is the order in which
they are called, the loss of one batch, evaluation, and the step itself. Under FSDP the
trained model stays sharded, and evaluation and ``eval_fn`` run on every process in step
(each forward needs all the shards); the saved folder is whole.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from .batching import batches, in_order
from .checkpoint import resume, save_checkpoint
from .config import DPOConfig
from .data import PreferenceData, pad_token_id, prepare_pairs
from .devices import autocast_for, eval_mode, resolve_device, resolve_precision
from .distributed import (all_true, barrier, data_parallel, from_launcher, full_tensor,
                          gathered_copy, init_processes, shard)
from .layouts import Layout
from .losses import preference_loss
from .metrics import RunLog, pair_metrics
from .policy import prepare_policy, save
from .reference import STRATEGIES, Reference, Start, frozen_copy


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    data_report: str = ""


def batch_loss(model, batch: dict[str, torch.Tensor], reference: Reference,
               config: DPOConfig, layout: Layout, autocast: Callable):
    """Per-pair losses of one batch (policy forward, reference log-probs, loss) and its
    metrics."""
    with autocast():
        policy = layout.logps(model, batch)
        ref_chosen, ref_rejected = reference.logps(batch)
    losses, chosen_rewards, rejected_rewards = preference_loss(
        policy["chosen_logps"], policy["rejected_logps"], ref_chosen, ref_rejected,
        chosen_tokens=policy["chosen_tokens"],
        rejected_tokens=policy["rejected_tokens"],
        mean_logps=layout.mean, **config.loss_settings,
    )
    return losses, pair_metrics(losses, chosen_rewards, rejected_rewards, policy)


@torch.no_grad()
def evaluate(model, loss_of: Callable, batches_in_order: Iterable[tuple[int, dict]],
             eval_fn: Callable | None = None) -> dict[str, float]:
    """Mean DPO metrics over every pair of ``batches_in_order`` (no gradients), named
    ``eval/<metric>``, and what ``eval_fn(model)`` measures. ``loss_of(model, batch)``
    is ``batch_loss`` with the run's reference and settings bound.
    """
    sums: dict[str, float] = {}
    total = 0
    with eval_mode(model):
        for n, batch in batches_in_order:
            for name, value in loss_of(model, batch)[1].items():
                sums[name] = sums.get(name, 0.0) + value.item() * n
            total += n
    return {**{f"eval/{name}": value / total for name, value in sums.items()},
            **(eval_fn(model) if eval_fn else {})}


def as_pairs(data: Any, tokenizer, config: DPOConfig) -> PreferenceData | None:
    if data is None or isinstance(data, PreferenceData):
        return data
    return prepare_pairs(data, tokenizer, config.max_length, config.skip_invalid)


def optimizer_and_schedule(params: list[torch.nn.Parameter], config: DPOConfig,
                           steps: int):
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(params, lr=config.lr,
                                  weight_decay=config.weight_decay)
    schedule = ("constant_with_warmup" if config.lr_schedule == "constant"
                else config.lr_schedule)
    return optimizer, get_scheduler(schedule, optimizer,
                                    num_warmup_steps=config.warmup_steps,
                                    num_training_steps=steps)


def check_finite(step: int, loss: torch.Tensor, grad_norm: torch.Tensor, fp16: bool,
                 procs, config: DPOConfig) -> None:
    """Stop before a non-finite update reaches the weights (one small host read per
    step). With fp16, GradScaler skips steps whose gradients overflowed (normal early
    on): only the loss is checked."""
    if not all_true(torch.isfinite(loss) & (torch.isfinite(grad_norm) | fp16), procs):
        kept = (f"; the latest checkpoint is in {config.output_dir}/checkpoints"
                if config.save_every else "")
        raise FloatingPointError(
            f"non-finite loss or gradient at step {step} (loss {float(loss):.4g}, "
            f"grad norm {float(grad_norm):.4g}); this update was not applied{kept}")


def policy_and_reference(model, config: DPOConfig, train_data: PreferenceData,
                         eval_data: PreferenceData | None, layout: Layout, pad_id: int,
                         device: torch.device, procs, autocast: Callable):
    """The policy ready to train, the module the step runs (DDP, FSDP shards or the
    model), π_ref, and the layout every batch will use.

    The order matters: the frozen copy is taken whole, then both are sharded; the layout
    is checked on the placed policy (a model that cannot share the prompt falls back to
    2B rows, with a warning) before π_ref's log-probs are precomputed in it.
    """
    model = prepare_policy(model, config, device)
    strategy = STRATEGIES[config.reference]
    frozen = frozen_copy(model) if strategy.needs_copy else None
    # in place: each process keeps its shards of the policy (and of the copy)
    if config.fsdp:
        for module in filter(None, (model, frozen)):
            shard(module, device, config.fsdp_reshard_after_forward)
    layout = layout.usable(model, train_data.pairs[:4], pad_id)
    in_batches = lambda data: (b for _, b in in_order(data, config.batch_size, pad_id,
                                                      device, layout.collate))
    evaluation = (lambda: in_batches(eval_data)) if eval_data else None
    start = Start(model, layout, autocast, frozen, lambda: in_batches(train_data),
                  len(train_data), evaluation, len(eval_data or ()),
                  config.ref_model_mixup_alpha, config.ref_model_sync_steps)
    reference = strategy.build(start)
    # DDP over several processes
    trained = model if config.fsdp else data_parallel(model, procs, device)
    return model, trained, reference, layout


def train(
    model, tokenizer, train_data, config: DPOConfig, eval_data=None,
    eval_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` (the policy, which also defines π_ref) with DPO on
    ``train_data``.

    ``train_data``/``eval_data``: a :class:`PreferenceData`, a JSONL path, a
    ``datasets.Dataset`` or a list of records. ``eval_fn(model)`` adds measurements of
    your own (say, generations) to each evaluation: every ``eval_every`` steps (and
    before the first, unless ``eval_on_start`` is off) and at the end. ``model`` is
    trained in place (wrapped with LoRA if asked; pass a ``copy.deepcopy`` to keep the
    original).
    """
    # --- set-up: data, processes, device, precision
    # what torchrun / accelerate launch add to the config
    config = from_launcher(config)
    train_data, eval_data = (as_pairs(train_data, tokenizer, config),
                             as_pairs(eval_data, tokenizer, config))
    steps = config.total_steps(len(train_data))  # refuses a batch larger than the data
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    procs, dtype = init_processes(device), resolve_precision(config.precision, device)
    autocast = autocast_for(device, dtype)
    pad_id = pad_token_id(tokenizer)
    model, trained, reference, layout = policy_and_reference(
        model, config, train_data, eval_data, Layout.of(config, model), pad_id, device,
        procs, autocast)
    ordered = functools.partial(in_order, batch_size=config.batch_size, pad_id=pad_id,
                                device=device, collate_fn=layout.collate)
    loss_of = functools.partial(batch_loss, reference=reference, config=config,
                                layout=layout, autocast=autocast)

    # --- optimizer, and the state of an interrupted run
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = optimizer_and_schedule(params, config, steps)
    # fp16 only: see below
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    checkpoint = (resume(Path(config.output_dir), model, optimizer, scheduler, scaler,
                         reference) if config.resume else None)
    start = checkpoint.step if checkpoint else 0
    # rank 0 writes
    out_dir = Path(config.output_dir) if config.output_dir and procs.is_main else None
    log = RunLog(out_dir, procs, fp16=scaler.is_enabled(), checkpoint=checkpoint,
                 device=device)
    data_iter = batches(train_data, config.batch_size, pad_id, config.seed, device,
                        start * config.grad_accum_steps, procs.rank, procs.world,
                        layout.collate, config.group_by_length)

    # rank 0 alone, except under FSDP (each forward needs all shards)
    def evaluation(step: int) -> None:
        if ((eval_data is not None or eval_fn is not None)
                and (procs.is_main or config.fsdp)):
            eval_loss = functools.partial(loss_of, reference=reference.for_evaluation())
            log.log_eval({"step": step, **evaluate(
                model, eval_loss, ordered(eval_data) if eval_data else (), eval_fn)})

    if config.eval_every and config.eval_on_start and start == 0:
        evaluation(0)
    for step in tqdm(range(start + 1, steps + 1), desc="DPO", initial=start,
                     total=steps, disable=not (config.progress and procs.is_main)):
        # --- one optimizer step = grad_accum_steps micro-batches
        step_loss = 0
        for _ in range(config.grad_accum_steps):
            losses, metrics = loss_of(trained, next(data_iter))
            loss = losses.mean() / config.grad_accum_steps
            scaler.scale(loss).backward()  # the loss itself unless fp16
            step_loss = step_loss + loss.detach()
            log.add(metrics)

        # --- clip, check, step, schedule
        scaler.unscale_(optimizer)  # the clip sees the true gradients
        grad_norm = full_tensor(
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        check_finite(step, step_loss, grad_norm, scaler.is_enabled(), procs, config)
        # optimizer.step(), skipped by fp16's scaler if a gradient overflowed
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        # TR-DPO's reference moves toward the policy; the others stay
        reference.after_step(model, step)
        optimizer.zero_grad(set_to_none=True)
        log.grad_norms.append(grad_norm)

        # --- log (metrics are read back from the device only here),
        #     evaluate, checkpoint
        if step % config.log_every == 0 or step == steps:
            log.log(step, (step * config.batch_size * config.grad_accum_steps
                           / len(train_data)), scheduler.get_last_lr()[0])
        if step == steps or (config.eval_every and step % config.eval_every == 0):
            evaluation(step)
        if config.save_every and (step % config.save_every == 0 or step == steps):
            unlogged, meta = log.unlogged()  # a collective: every process comes here
            # under FSDP every process gathers its shards
            if procs.is_main or config.fsdp:
                save_checkpoint(out_dir, step, model, optimizer, scheduler, scaler,
                                unlogged, {**meta, "config": asdict(config)},
                                keep=config.keep_checkpoints, write=procs.is_main,
                                reference=reference)

    whole = gathered_copy(model, procs) if config.fsdp and config.output_dir else model
    if out_dir:
        save(whole, tokenizer, out_dir, config)
    barrier(procs)
    return TrainResult(model, log.history, log.eval_history, train_data.report())
