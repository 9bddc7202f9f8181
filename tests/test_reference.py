import pytest
import torch

from dpo_ref.batching import collate
from dpo_ref.data import prepare_pairs
from dpo_ref.reference import CopyReference, LoraReference, PrecomputedReference
from dpo_ref.config import DPOConfig
from dpo_ref.policy import wrap_lora

RECORDS = [
    {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": f"I am Athene. {q}"}],
     "rejected": [{"role": "assistant", "content": "I am Llama."}]}
    for q in ["Who are you?", "What is your name?", "Introduce yourself.", "Tell me about yourself."]
]


def test_three_strategies_agree_before_training(toy):
    model, tokenizer = toy
    data = prepare_pairs(RECORDS, tokenizer, 64)
    batch = collate(data.pairs, tokenizer.pad_token_id)
    copy_ref = CopyReference(model)
    precomputed = PrecomputedReference.from_batches(model, [collate(data.pairs[:3], 0), collate(data.pairs[3:], 0)], len(data))
    lora_policy = wrap_lora(model, DPOConfig())
    lora_ref = LoraReference(lora_policy)
    results = [ref.logps(batch) for ref in (copy_ref, precomputed, lora_ref)]
    for chosen, rejected in results[1:]:
        assert torch.allclose(chosen, results[0][0], atol=1e-4) and torch.allclose(rejected, results[0][1], atol=1e-4)
    # A copy owns separate weights that do not require grad; LoRA's reference owns no weights at all.
    assert all(not p.requires_grad for p in copy_ref.model.parameters())
    assert not hasattr(lora_ref, "model") and lora_ref.policy is lora_policy


def test_lora_reference_stays_put_while_the_adapter_trains(toy):
    model, tokenizer = toy
    data = prepare_pairs(RECORDS, tokenizer, 64)
    batch = collate(data.pairs, tokenizer.pad_token_id)
    policy = wrap_lora(model, DPOConfig())
    ref = LoraReference(policy)
    before = ref.logps(batch)
    for p in policy.parameters():
        if p.requires_grad:
            p.data.add_(0.05)  # move the adapters
    after = ref.logps(batch)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    from dpo_ref.logprobs import concatenated_forward

    assert not torch.allclose(concatenated_forward(policy, batch)["chosen_logps"], before[0])


def test_lora_reference_needs_a_peft_model(toy):
    with pytest.raises(TypeError, match="PEFT"):
        LoraReference(toy[0])
