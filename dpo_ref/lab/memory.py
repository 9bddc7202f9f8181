"""How much memory a DPO run needs, from the model's shape and the run's settings:
arithmetic, no model.

The parts, in bytes (P parameters, L LoRA parameters, 16-bit autocast on a GPU):

- weights: full fine-tuning keeps fp32 master weights (4P) and autocast's 16-bit copies
  of them for the step (2P); LoRA keeps the base in 16 bits (2P) and the adapters in
  fp32 (4L);
- gradients (4P or 4L) and AdamW's two moments (8P or 8L);
- the reference: a frozen copy of the policy (``copy``, and TR-DPO's moving copy ``tr``:
  its master weights, 4P, or the 16-bit base with LoRA, 2P) or nothing (``lora``:
  adapters off; ``precomputed``: numbers computed before training; ``none``: the
  reference-free losses have no π_ref);
- activations kept for the backward pass, per token and layer (``activation_elements``),
  or only each layer's input with gradient checkpointing;
- the log-prob computation: the fp32 logits of every response token, several V-sized
  tensors each (``LOGIT_COPIES``, measured on the CPU by ``benchmarks/bench_vocab.py``),
  or one chunk of them.

It is an estimate: allocator slack, the CUDA context and fragmentation come on top
(``OVERHEAD``).
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
# fp32 V-sized tensors per response token on the full-logits path (measured on the CPU)
LOGIT_COPIES = 4
OVERHEAD = 1.0 * GB  # CUDA context and allocator slack on a GPU
T4_BYTES = 15.8 * GB  # a Colab T4: 16 GB, of which about 15.8 usable


@dataclass(frozen=True)
class Shape:
    """A decoder-only transformer with grouped-query attention and a gated MLP (Llama,
    Qwen2, SmolLM2)."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True
    qkv_bias: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def params(self) -> int:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = (self.hidden * (q + 2 * kv) + q * self.hidden
                     + (q + 2 * kv if self.qkv_bias else 0))
        layer = (attention + 3 * self.hidden * self.intermediate
                 + 2 * self.hidden)  # + its two norms
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * layer + embeddings + self.hidden  # + the final norm

    def lora_params(self, r: int = 16) -> int:
        """LoRA on every linear layer of the blocks (peft's "all-linear": not the LM
        head)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        pairs = [(self.hidden, q), (self.hidden, kv), (self.hidden, kv),
                 (q, self.hidden), (self.hidden, self.intermediate),
                 (self.hidden, self.intermediate), (self.intermediate, self.hidden)]
        return self.layers * r * sum(i + o for i, o in pairs)

    def activation_elements(self) -> int:
        """Tensors autograd keeps per token and layer: two norms' inputs and outputs,
        q, k, v, the attention output, and the MLP's gate, up, activation and
        down-projection input."""
        return (6 * self.hidden + 2 * self.kv_heads * self.head_dim
                + 4 * self.intermediate)


# From each model's config.json on the Hugging Face hub.
SHAPES = {s.name: s for s in (
    Shape("SmolLM2-135M", 576, 30, 1536, 9, 3, 49_152),
    Shape("SmolLM2-360M", 960, 32, 2560, 15, 5, 49_152),
    Shape("SmolLM2-1.7B", 2048, 24, 8192, 32, 32, 49_152),
    Shape("Qwen2.5-0.5B", 896, 24, 4864, 14, 2, 151_936, qkv_bias=True),
    Shape("Qwen2.5-1.5B", 1536, 28, 8960, 12, 2, 151_936, qkv_bias=True),
)}


def training_memory(shape: Shape, reference: str = "copy", lora: bool = False,
                    batch: int = 2, prompt_tokens: int = 256,
                    response_tokens: int = 256, gradient_checkpointing: bool = False,
                    chunked: bool = True, chunk: int = 64, act_bytes: int = 2,
                    lora_r: int = 16) -> dict[str, float]:
    """Bytes per part for one training step (``reference``:
    copy | lora | precomputed | tr | none).

    Tokens: ``batch`` pairs, each a prompt and two responses (prompt sharing: the prompt
    runs once). ``act_bytes``: 2 under 16-bit autocast, 4 in fp32 (the CPU), where a
    LoRA base is kept in fp32 too.
    """
    lora = lora or reference == "lora"
    P, L = shape.params(), shape.lora_params(lora_r) if lora else 0
    trained = L if lora else P
    # A LoRA base is stored in 16 bits under autocast and in fp32 otherwise; the
    # frozen copy is the base (LoRA) or the fp32 weights.
    base = act_bytes if lora else 4
    copy_bytes = base * P
    parts = {
        "weights": base * P + 4 * L if lora else (4 + (2 if act_bytes == 2 else 0)) * P,
        "gradients": 4 * trained,
        "AdamW state": 8 * trained,
        "reference": {"copy": copy_bytes, "tr": copy_bytes, "lora": 0, "precomputed": 0,
                      "none": 0}[reference],
    }
    tokens = batch * (prompt_tokens + 2 * response_tokens)
    per_token = shape.hidden if gradient_checkpointing else shape.activation_elements()
    parts["activations"] = tokens * shape.layers * per_token * act_bytes
    if gradient_checkpointing:  # one layer's full activations while it is recomputed
        parts["activations"] += tokens * shape.activation_elements() * act_bytes
    logit_rows = (min(chunk, 2 * batch * response_tokens) if chunked
                  else 2 * batch * response_tokens)
    parts["log-probs"] = logit_rows * shape.vocab * 4 * LOGIT_COPIES
    return parts


def fits_t4(parts: dict[str, float]) -> bool:
    return sum(parts.values()) + OVERHEAD <= T4_BYTES
