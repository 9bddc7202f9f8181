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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name_or_path == "toy":
        from .toy import toy_path, build_toy

        path = toy_path()
        if not (path / "config.json").exists():
            build_toy(path)
        name_or_path = str(path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=dtype if dtype is not None else "auto",
        trust_remote_code=trust_remote_code, use_safetensors=True,
    )
    return model, tokenizer
