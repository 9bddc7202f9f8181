"""The toy world's tokenizer and model, in three architectures and chat formats.

The default is a small Llama with the toy's own chat template. The two others exist so
that the notebooks can be tested offline on what a student meets on the hub: a
Qwen2-style model with a ChatML template (a system turn by default, no BOS,
``<|im_end|>`` ends a turn), and a GPT-2-style base model with no chat template and no
pad token (``dpo_ref.data`` then reads messages as plain text and pads with EOS). Each
is trained on the same corpus by ``dpo_ref.lab.toy.build_toy``.
"""

from __future__ import annotations

import torch

ARCHITECTURES = ("llama", "qwen2", "gpt2")

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>",
                  "<|assistant|>", "<|tool|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# the shape of Qwen2's: a default system turn, then <|im_start|>role ... <|im_end|>
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Per architecture: special tokens, and the tokenizer's named tokens and chat template.
TOKENS = {
    "llama": (SPECIAL_TOKENS,
              dict(bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>",
                   additional_special_tokens=SPECIAL_TOKENS[3:],
                   chat_template=CHAT_TEMPLATE)),
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              dict(eos_token="<|im_end|>", pad_token="<|endoftext|>",
                   additional_special_tokens=["<|im_start|>"],
                   chat_template=CHATML_TEMPLATE)),
    "gpt2": (["<|endoftext|>"],
             dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>")),
}


def check_architecture(architecture: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                         f"got {architecture!r}")
    return architecture


def build_tokenizer(texts: list[str], vocab_size: int = 512,
                    architecture: str = "llama"):
    """A byte-level BPE tokenizer (any text encodes, including names the corpus never
    saw) with the architecture's special tokens and chat template, as a transformers
    fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special, named = TOKENS[check_architecture(architecture)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def build_model(vocab_size: int, hidden_size: int = 128, layers: int = 4,
                heads: int = 4, seed: int = 0, tokenizer=None,
                architecture: str = "llama"):
    """A small, randomly initialised causal LM of the given architecture."""
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig,
                              LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

    torch.manual_seed(seed)
    ids = dict(bos_token_id=getattr(tokenizer, "bos_token_id", None),
               eos_token_id=getattr(tokenizer, "eos_token_id", None),
               pad_token_id=getattr(tokenizer, "pad_token_id", None))
    if check_architecture(architecture) == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=hidden_size, n_layer=layers,
                            n_head=heads, n_positions=256, **ids)
        return GPT2LMHeadModel(config)
    shape = dict(vocab_size=vocab_size, hidden_size=hidden_size,
                 intermediate_size=hidden_size * 8 // 3, num_hidden_layers=layers,
                 num_attention_heads=heads, max_position_embeddings=256,
                 tie_word_embeddings=True, **ids)
    if architecture == "qwen2":  # grouped-query attention, as Qwen2 models have
        return Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=heads // 2, **shape))
    return LlamaForCausalLM(LlamaConfig(num_key_value_heads=heads, **shape))
