"""The loop's schedule of evaluations (the loop itself is tested through every training test)."""

import pytest

from dpo_ref import DPOConfig, train

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
