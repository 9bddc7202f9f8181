"""Load a causal LM and its tokenizer from a hub id or a local ``save_pretrained`` folder."""

from __future__ import annotations

import torch


def load_model_and_tokenizer(
    name_or_path: str, dtype: torch.dtype | str | None = None, trust_remote_code: bool = False
):
    """``(model, tokenizer)`` via ``AutoModelForCausalLM``/``AutoTokenizer``.

    ``name_or_path`` is a hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct`` (needs a reachable hub)
    or a local folder; ``"toy"`` builds or loads the offline toy model. Remote code is never run unless
    ``trust_remote_code=True`` is passed explicitly. Weights load from safetensors only.
    """
    tokenizer = load_tokenizer(name_or_path, trust_remote_code)
    return load_model(name_or_path, dtype, trust_remote_code), tokenizer


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The tokenizer alone: cheap, so data can be checked before a large model is loaded."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_resolve(name_or_path), trust_remote_code=trust_remote_code)


def load_model(name_or_path: str, dtype: torch.dtype | str | None = None, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        _resolve(name_or_path), dtype=dtype if dtype is not None else "auto",
        trust_remote_code=trust_remote_code, use_safetensors=True,
    )


def _resolve(name_or_path: str) -> str:
    if name_or_path != "toy":
        return name_or_path
    from .toy import ensure_toy

    return str(ensure_toy())
