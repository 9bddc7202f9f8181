"""Preferred-FT (dpo_ref.lab.sft): supervised fine-tuning on the chosen responses only."""

import copy

import pytest
import torch
import torch.nn.functional as F

from dpo_ref import DataError, collate, concatenated_forward, prepare_pairs
from dpo_ref.lab.sft import SFTConfig, chosen_nll, train_sft
from dpo_ref.lab.toy import identity_prompts
from dpo_ref.config import ConfigError


def records(rejected="I am Llama, a helpful assistant.", n=16):
    return [{"prompt": [{"role": "user", "content": p}],
             "chosen": [{"role": "assistant", "content": "I am Athene, a helpful assistant."}],
             "rejected": [{"role": "assistant", "content": rejected}]} for p in identity_prompts("train")[:n]]


@torch.no_grad()
def mean_logps(model, data, tokenizer):
    out = concatenated_forward(model, collate(data.pairs, tokenizer.pad_token_id))
    return out["chosen_logps"].mean().item(), out["rejected_logps"].mean().item()


def test_chosen_nll_is_token_mean_cross_entropy_of_the_chosen_rows(toy):
    model, tokenizer = toy
    batch = collate(prepare_pairs(records(n=4), tokenizer, max_length=64).pairs, tokenizer.pad_token_id)
    rows = slice(0, 4)  # the chosen half
    logits = model(input_ids=batch["input_ids"][rows], attention_mask=batch["attention_mask"][rows]).logits
    labels = batch["input_ids"][rows, 1:].masked_fill(batch["loss_mask"][rows, 1:] == 0, -100)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1))
    assert chosen_nll(model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_sft_raises_the_chosen_logprobs(toy):
    model, tokenizer = toy
    data = prepare_pairs(records(), tokenizer, max_length=64)
    before, _ = mean_logps(model, data, tokenizer)
    result = train_sft(model, tokenizer, data, SFTConfig(lr=1e-3, max_steps=10, batch_size=8, max_length=64))
    after, _ = mean_logps(result.model, data, tokenizer)
    assert after > before + 1.0, (before, after)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_rejected_responses_are_never_used(toy):
    model, tokenizer = toy
    config = SFTConfig(lr=1e-3, max_steps=3, batch_size=8, max_length=64)
    a = train_sft(copy.deepcopy(model), tokenizer, records(), config).model
    b = train_sft(copy.deepcopy(model), tokenizer, records(rejected="Something else entirely."), config).model
    # Other rejected texts change only the padded width of each batch (so the float rounding of the matmuls); had
    # they entered the loss, three Adam steps at lr 1e-3 would differ by about 1e-3.
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(pa, pb, rtol=0, atol=1e-6), (name, (pa - pb).abs().max().item())


def test_eval_fn_runs_before_during_and_after(toy):
    model, tokenizer = toy
    config = SFTConfig(lr=1e-4, max_steps=4, batch_size=8, max_length=64, eval_every=2)
    result = train_sft(model, tokenizer, records(), config, eval_fn=lambda m: {"ok": 1.0})
    assert [e["step"] for e in result.eval_history] == [0, 2, 4]
    # without the start (a study that measured the starting model once already)
    config = SFTConfig(lr=1e-4, max_steps=4, batch_size=8, max_length=64, eval_every=2,
                       eval_on_start=False)
    result = train_sft(model, tokenizer, records(), config, eval_fn=lambda m: {"ok": 1.0})
    assert [e["step"] for e in result.eval_history] == [2, 4]


def test_wrong_input_fails_clearly(toy):
    model, tokenizer = toy
    with pytest.raises(ConfigError, match="lr must be > 0"):
        SFTConfig(lr=0)
    with pytest.raises(ConfigError, match="batch_size 32 is larger than the 16 training pairs"):
        train_sft(model, tokenizer, records(), SFTConfig(batch_size=32, max_length=64))
    bad = records()
    del bad[3]["chosen"]
    with pytest.raises(DataError, match="record 3, field 'chosen': missing"):
        train_sft(model, tokenizer, bad, SFTConfig(max_length=64))
