"""The loop's schedule of evaluations (the loop itself is tested through every training test),
every loss training a step, and a run without a reference running no reference forward."""

import pytest
import torch

from conftest import FOUR_PAIRS
from dpo_ref import DPOConfig, train
from dpo_ref.losses import LOSS_TYPES, REFERENCE_FREE

RECORDS = [
    {"prompt": [{"role": "user", "content": q}],
     "chosen": [{"role": "assistant", "content": f"I am Athene. {q}"}],
     "rejected": [{"role": "assistant", "content": "I am Llama."}]}
    for q in ["Who are you?", "What is your name?", "Introduce yourself.", "Tell me about you."]
]


@pytest.mark.parametrize("on_start, steps", [(True, [0, 2, 4]), (False, [2, 4])])
def test_eval_fn_runs_every_eval_every_steps_and_at_the_start_if_asked(toy, on_start, steps):
    model, tokenizer = toy
    config = DPOConfig(max_steps=4, batch_size=2, max_length=64, eval_every=2,
                       eval_on_start=on_start, progress=False)
    result = train(model, tokenizer, RECORDS, config, eval_fn=lambda m: {"ok": 1.0})
    assert [e["step"] for e in result.eval_history] == steps


# ---------------------------------------------------------------- every loss, and no reference

def settings_for(loss_type):
    return dict(loss_type=loss_type, reference="none" if loss_type in REFERENCE_FREE else "copy",
                rdpo_alpha=0.01 if loss_type == "rdpo" else 0.0)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_each_loss_trains_a_step(toy, loss_type):
    model, tokenizer = toy
    config = DPOConfig(**settings_for(loss_type), batch_size=4, max_steps=2, lr=1e-4, max_length=64,
                       device="cpu", progress=False)
    history = train(model, tokenizer, FOUR_PAIRS, config).history
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def count_forwards(monkeypatch, model):
    """Calls of the model class's forward: the policy's and any copy's alike."""
    calls = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    return calls


@pytest.mark.parametrize("reference,loss_type,per_step", [("none", "simpo", 1), ("copy", "sigmoid", 2)])
def test_reference_none_runs_no_reference_forward(toy, monkeypatch, reference, loss_type, per_step):
    import dpo_ref.trainer

    model, tokenizer = toy
    if reference == "none":  # nothing is copied either
        monkeypatch.setattr(dpo_ref.trainer, "frozen_copy", lambda m: pytest.fail("copied the policy"))
    calls = count_forwards(monkeypatch, model)
    config = DPOConfig(loss_type=loss_type, reference=reference, prompt_sharing=False, batch_size=4,
                       max_steps=3, lr=1e-4, max_length=64, device="cpu", progress=False)
    train(model, tokenizer, FOUR_PAIRS, config)
    assert len(calls) == 3 * per_step  # one policy forward per step (plus the copy's with "copy")
