import pytest
import torch

from conftest import FOUR_PAIRS
from dpo_ref import train
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


def test_evaluation_pairs_get_their_own_precomputed_reference(toy):
    """Evaluation with a precomputed π_ref reads a table of the evaluation pairs (their
    indices count from 0 too): it must measure what a frozen copy measures. Before the
    fix it looked the evaluation pairs up in the training pairs' table (margins of 15
    nats at step 0, where the policy is π_ref and every reward is 0)."""
    import copy

    from dpo_ref import train

    model, tokenizer = toy
    evaluation = [{"prompt": [{"role": "user", "content": f"What is two plus two? ({i})"}],
                   "chosen": [{"role": "assistant", "content": "Two plus two is four."}],
                   "rejected": [{"role": "assistant", "content": "A cow says moo, moo."}]}
                  for i in range(6)]
    histories = {}
    for reference in ("copy", "precomputed"):
        config = DPOConfig(reference=reference, batch_size=2, max_steps=2, eval_every=1, lr=1e-3,
                           max_length=64, device="cpu", progress=False)
        histories[reference] = train(copy.deepcopy(model), tokenizer, RECORDS, config,
                                     eval_data=evaluation).eval_history
    assert histories["copy"][0]["eval/rewards/margins"] == 0.0  # step 0: π_θ = π_ref
    assert len(histories["copy"]) == len(histories["precomputed"]) == 3
    for ours, theirs in zip(histories["precomputed"], histories["copy"]):
        for name in ("eval/rewards/chosen", "eval/rewards/rejected", "eval/rewards/margins"):
            assert ours[name] == pytest.approx(theirs[name], abs=1e-4), name


def test_a_precomputed_reference_evaluates_with_an_eval_fn_alone(toy):
    """No evaluation pairs, only measurements of the model: nothing reads π_ref there."""
    from dpo_ref import train

    model, tokenizer = toy
    config = DPOConfig(reference="precomputed", batch_size=2, max_steps=1, eval_every=1,
                       max_length=64, device="cpu", progress=False)
    history = train(model, tokenizer, RECORDS, config, eval_fn=lambda m: {"ran": 1.0}).eval_history
    assert [e["ran"] for e in history] == [1.0, 1.0]


# ---------------------------------------------------------------- TR-DPO's moving copy

def test_trust_region_reference_moves_by_the_mixup_rule_every_tau_steps(toy):
    from dpo_ref.reference import TrustRegionReference

    policy = toy[0]
    reference = TrustRegionReference(policy, alpha=0.3, sync_steps=2)
    before = [p.clone() for p in reference.model.parameters()]
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    reference.after_step(policy, 1)  # not a multiple of τ: unchanged
    assert all(torch.equal(p, b) for p, b in zip(reference.model.parameters(), before))
    reference.after_step(policy, 2)
    for ref, old, new in zip(reference.model.parameters(), before, policy.parameters()):
        mixed = 0.3 * new.double() + 0.7 * old.double()  # the rule, in float64: float32 rounding only
        torch.testing.assert_close(ref.double(), mixed, rtol=1e-6, atol=1e-7)
        assert not ref.requires_grad


def test_train_with_reference_tr_mixes_the_reference_after_tau_steps(toy, monkeypatch):
    from dpo_ref.reference import STRATEGIES, Strategy, TrustRegionReference

    model, tokenizer = toy
    start = [p.detach().clone() for p in model.parameters()]
    made = []  # the reference train builds, recorded
    tr = STRATEGIES["tr"]
    monkeypatch.setitem(STRATEGIES, "tr", Strategy(lambda s: made.append(tr.build(s)) or made[-1],
                                                   needs_copy=True))
    config = DPOConfig(reference="tr", ref_model_mixup_alpha=0.25, ref_model_sync_steps=2, batch_size=4,
                       max_steps=3, lr=1e-3, max_length=64, device="cpu", progress=False)
    snapshots = []  # the policy at every step, as after_step sees it
    original = TrustRegionReference.after_step

    def recording(self, policy, step):
        snapshots.append([p.detach().clone() for p in policy.parameters()])
        return original(self, policy, step)

    monkeypatch.setattr(TrustRegionReference, "after_step", recording)
    result = train(model, tokenizer, FOUR_PAIRS, config)
    assert isinstance(made[0], TrustRegionReference) and len(snapshots) == 3
    assert not torch.equal(snapshots[1][0], start[0])  # the policy did move
    # Synced once, at step 2 (τ = 2; step 3 is not a multiple): θ_ref = 0.25·θ_2 + 0.75·θ_0.
    for ref, old, at_sync in zip(made[0].model.parameters(), start, snapshots[1]):
        mixed = 0.25 * at_sync.double() + 0.75 * old.double()
        torch.testing.assert_close(ref.double(), mixed, rtol=1e-6, atol=1e-7)
    assert result.model is model


def test_every_reference_the_config_accepts_is_a_strategy():
    from dpo_ref.config import REFERENCES
    from dpo_ref.reference import STRATEGIES

    assert tuple(STRATEGIES) == REFERENCES
    assert {n for n, s in STRATEGIES.items() if s.needs_copy} == {"copy", "tr"}
