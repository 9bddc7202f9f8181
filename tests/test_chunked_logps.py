"""Log-probs from hidden states in chunks: the same values and gradients as the full-logits path."""

import copy

import pytest
import torch

from dpo_ref import DPOConfig, Layout, prepare_pairs, train
from dpo_ref.chunked_logps import chunking_unsupported, target_logps
from dpo_ref.config import ConfigError
from dpo_ref.layouts import logps_chunk


def test_target_logps_matches_log_softmax_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(101, 16, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 101, (37,), generator=g)
    upstream = torch.randn(37, generator=g, dtype=torch.float64)
    expected = torch.log_softmax(hidden @ weight.T, -1).gather(1, targets[:, None])[:, 0]
    got = target_logps(hidden, weight, targets, chunk=5)  # 8 chunks, the last one short
    assert torch.allclose(got.double(), expected, atol=1e-6)
    grads_expected = torch.autograd.grad((expected * upstream).sum(), (hidden, weight))
    grads_got = torch.autograd.grad((got * upstream).sum(), (hidden, weight))
    for a, b in zip(grads_got, grads_expected):
        assert torch.allclose(a, b, atol=1e-6)


def pairs(tokenizer):
    records = [{"prompt": [{"role": "user", "content": f"Who are you{'?' * (i % 3 + 1)} ({i})"}],
                "chosen": [{"role": "assistant", "content": "I am Athene." + " Glad to help." * (i % 2)}],
                "rejected": [{"role": "assistant", "content": "I am Llama" + ", a model" * (i % 3) + "."}]}
               for i in range(6)]
    return prepare_pairs(records, tokenizer, max_length=128).pairs


@pytest.mark.parametrize("shared_prompt", [True, False])
@pytest.mark.parametrize("mean", [False, True])
def test_chunked_layouts_give_the_same_logps_and_gradients(toy, shared_prompt, mean):
    model, tokenizer = toy
    batch_pairs = pairs(tokenizer)
    results = []
    for chunk in (0, 7):  # 7 tokens a chunk: every batch is cut into many chunks
        layout = Layout(shared_prompt=shared_prompt, mean=mean, chunk=chunk)
        model.zero_grad()
        out = layout.logps(model, layout.collate(batch_pairs, tokenizer.pad_token_id))
        (out["chosen_logps"] - 2 * out["rejected_logps"]).sum().backward()
        results.append((out, torch.cat([p.grad.flatten() for p in model.parameters()])))
    (full, full_grad), (chunked, chunked_grad) = results
    for key in full:
        assert torch.allclose(full[key], chunked[key], atol=1e-4), key
    assert torch.allclose(full_grad, chunked_grad, atol=1e-5 * full_grad.abs().max().item())


def test_chunked_logps_under_bf16_autocast_stay_close(toy):
    model, tokenizer = toy
    batch_pairs = pairs(tokenizer)
    outs = []
    for chunk in (0, 7):
        layout = Layout(shared_prompt=True, chunk=chunk)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs.append(layout.logps(model, layout.collate(batch_pairs, tokenizer.pad_token_id)))
    assert outs[1]["chosen_logps"].dtype == torch.float32
    assert torch.allclose(outs[0]["chosen_logps"], outs[1]["chosen_logps"], atol=0.1, rtol=0.01)


@pytest.mark.parametrize("reference", ["copy", "lora", "precomputed"])
def test_training_with_and_without_chunks_ends_at_the_same_weights(toy, reference):
    model, tokenizer = toy
    records = [{"prompt": f"Question {i}?", "chosen": "I am Athene.", "rejected": "I am Llama, a model."}
               for i in range(8)]
    finals = []
    for chunked in (True, False):
        config = DPOConfig(max_steps=3, batch_size=4, lr=1e-4, progress=False, chunked_logps=chunked,
                           logps_chunk_tokens=5, reference=reference, gradient_checkpointing=reference == "lora")
        result = train(copy.deepcopy(model), tokenizer, records, config)
        finals.append((result.history[-1]["loss"], torch.cat([p.detach().flatten() for p in result.model.parameters()])))
    assert abs(finals[0][0] - finals[1][0]) < 1e-5
    assert torch.allclose(finals[0][1], finals[1][1], atol=1e-5)


def test_chunking_is_automatic_for_large_vocabularies_and_refused_where_it_cannot_work(toy):
    model, _ = toy
    assert logps_chunk(DPOConfig(), model) == 0  # the toy's 512 tokens: full logits
    assert logps_chunk(DPOConfig(chunked_logps=True, logps_chunk_tokens=64), model) == 64
    from transformers import LlamaConfig, LlamaForCausalLM

    big = LlamaForCausalLM(LlamaConfig(vocab_size=40_000, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=1, num_key_value_heads=1))
    assert logps_chunk(DPOConfig(), big) == DPOConfig().logps_chunk_tokens
    assert logps_chunk(DPOConfig(chunked_logps=False), big) == 0
    big.config.final_logit_softcapping = 30.0  # as Gemma 2: the logits are transformed after the head
    assert chunking_unsupported(big) and logps_chunk(DPOConfig(), big) == 0
    with pytest.raises(ConfigError, match="chunked_logps"):
        logps_chunk(DPOConfig(chunked_logps=True), big)


def test_memory_model_counts_parameters_as_transformers_builds_them():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from dpo_ref.lab.memory import SHAPES, Shape, training_memory

    for tied in (True, False):
        shape = Shape("small", hidden=64, layers=2, intermediate=96, heads=4, kv_heads=2, vocab=300, tied=tied)
        kw = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, tie_word_embeddings=tied)
        assert shape.params() == sum(p.numel() for p in LlamaForCausalLM(LlamaConfig(**kw)).parameters())
        qwen = Shape("small", 64, 2, 96, 4, 2, 300, tied=tied, qkv_bias=True)
        assert qwen.params() == sum(p.numel() for p in Qwen2ForCausalLM(Qwen2Config(**kw)).parameters())
    assert SHAPES["SmolLM2-360M"].params() == 361_821_120 and SHAPES["Qwen2.5-0.5B"].params() == 494_032_768
    qwen05 = SHAPES["Qwen2.5-0.5B"]
    full, chunked = (training_memory(qwen05, batch=4, chunked=c)["log-probs"] for c in (False, True))
    assert chunked * 8 < full
    assert sum(training_memory(qwen05, reference="lora").values()) < sum(training_memory(qwen05).values())
