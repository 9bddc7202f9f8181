"""The policy π_θ that training updates: made ready for training, and saved when it is
done."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .config import DPOConfig
from .files import share


def wrap_lora(model: torch.nn.Module, config: DPOConfig) -> torch.nn.Module:
    """A PEFT model with fresh LoRA adapters (zero effect until trained) on
    ``lora_target_modules``."""
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules, task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora_config)


def prepare_policy(model: torch.nn.Module, config: DPOConfig,
                   device: torch.device) -> torch.nn.Module:
    """Device, master-weight precision, gradient checkpointing and LoRA, in the order
    each needs."""
    # fully_shard moves the model to the device one layer at a time, sharding each
    if not config.fsdp:
        model.to(device)
    if not config.use_lora and any(p.dtype != torch.float32 for p in model.parameters()
                                   if p.is_floating_point()):
        # Full fine-tuning needs fp32 master weights: lr × update is below bf16's
        # resolution for most weights. Autocast still runs the matmuls in bf16/fp16.
        model.float()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        # the frozen embeddings would otherwise cut the graph before the adapters
        if config.use_lora:
            model.enable_input_require_grads()
    if config.use_lora:
        model = wrap_lora(model, config)
    return model.train()


def save(model: torch.nn.Module, tokenizer, output_dir: str | Path,
         config: DPOConfig) -> None:
    """Hugging Face format (safetensors) that ``from_pretrained(output_dir)`` loads.

    A LoRA policy is merged into its base weights when ``config.merge_lora`` (the
    default), else its adapters are saved with peft. ``dpo_config.json`` is written
    last: its presence marks a finished run.
    """
    output_dir = Path(output_dir)
    if config.use_lora and config.merge_lora:
        # keep the live model a PeftModel
        copy.deepcopy(model).merge_and_unload().save_pretrained(output_dir)
    else:
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    share(output_dir)
    (output_dir / "dpo_config.json").write_text(json.dumps(asdict(config), indent=2))
