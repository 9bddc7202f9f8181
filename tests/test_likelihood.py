"""dpo_ref.lab.likelihood: the log-probs of every pair, and how a run moved them."""

import copy

import torch

from dpo_ref.data import conversational_record, pad_token_id, prepare_pairs
from dpo_ref.lab.likelihood import displacement, pair_logps


def _pairs(tokenizer, n=7):
    records = [conversational_record(f"What is {i} plus {i}?", f"It is {2 * i}.",
                                     "I do not know." + " Sorry." * (i % 3)) for i in range(n)]
    return prepare_pairs(records, tokenizer, 128)


def test_pair_logps_equal_one_pair_at_a_time(toy):
    """Batched and padded (7 pairs in batches of 3) or one pair alone: the same summed log-probs,
    each the sum of the response tokens' log-probs computed here by hand."""
    model, tokenizer = toy
    data = _pairs(tokenizer)
    batched = pair_logps(model, data, pad_token_id(tokenizer), batch_size=3)
    assert set(batched) == {"chosen", "rejected", "chosen_tokens", "rejected_tokens"}
    for i, pair in enumerate(data.pairs):
        for name, response in (("chosen", pair.chosen_ids), ("rejected", pair.rejected_ids)):
            ids = torch.tensor([pair.prompt_ids + response])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            start = len(pair.prompt_ids) - 1  # the position that predicts the first response token
            want = logp[start:].gather(-1, ids[0, start + 1:, None]).sum()
            torch.testing.assert_close(batched[name][i], want, rtol=1e-5, atol=1e-4)
            assert batched[f"{name}_tokens"][i] == len(response)


def test_pair_logps_leave_the_model_as_it_was(toy):
    model, tokenizer = toy
    model.train()
    pair_logps(model, _pairs(tokenizer), pad_token_id(tokenizer))
    assert model.training


def test_displacement_counts_pairs_whose_chosen_fell_while_the_margin_grew():
    before = {"chosen": torch.tensor([-10.0, -10.0, -10.0, -10.0]),
              "rejected": torch.tensor([-12.0, -12.0, -12.0, -12.0])}
    after = {"chosen": torch.tensor([-11.0, -9.0, -11.0, -12.0]),   # Δ: -1, +1, -1, -2
             "rejected": torch.tensor([-20.0, -20.0, -11.0, -13.0])}  # Δ: -8, -8, +1, -1
    moved = displacement(before, after)
    assert moved["chosen"] == -0.75 and moved["rejected"] == -4.0 and moved["margin"] == 3.25
    # pair 0: chosen fell, margin grew (displaced); 1: chosen rose; 2: margin shrank; 3: margin shrank
    assert moved["displaced"] == 0.25


def test_displacement_sees_what_training_changed(toy):
    """Nothing when nothing was trained; after DPO steps, the margin the loss widened. (Which way
    the chosen log-prob moves is the study's question, notebooks/10_2_family_study.ipynb.)"""
    from dpo_ref import DPOConfig, train

    model, tokenizer = toy
    data = _pairs(tokenizer, n=8)
    pad = pad_token_id(tokenizer)
    before = pair_logps(model, data, pad)
    assert displacement(before, pair_logps(model, data, pad)) == {
        "chosen": 0.0, "rejected": 0.0, "margin": 0.0, "displaced": 0.0}
    trained = train(copy.deepcopy(model), tokenizer, data,
                    DPOConfig(beta=0.1, lr=1e-3, max_steps=5, batch_size=8, progress=False)).model
    moved = displacement(before, pair_logps(trained, data, pad))
    assert moved["margin"] > 0  # five steps of DPO on these pairs widen their margin
