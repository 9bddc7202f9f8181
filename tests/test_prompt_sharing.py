"""Prompt sharing (one row per pair, custom attention mask) must give what 2B separate rows give."""

import copy
import dataclasses

import pytest
import torch

from dpo_ref import DPOConfig, prepare_pairs, train
from dpo_ref.batching import collate
from dpo_ref.data import PreferencePair
from dpo_ref.logprobs import concatenated_forward
from dpo_ref.layouts import check_prompt_sharing
from dpo_ref.prompt_sharing import CHOSEN, PROMPT, REJECTED, collate_shared, shared_attention_mask, shared_forward
from dpo_ref.batching import batches
from dpo_ref.data import PreferenceData


def uneven_pairs(tokenizer):
    """Prompts of different lengths; rejected sometimes longer, sometimes shorter than chosen."""
    records = []
    for i in range(6):
        question = f"Who are you{', please, tell me' * (i % 3)}? ({i})"
        chosen, rejected = "I am Athene.", "I am Llama" + ", a model" * (i % 2) + "."
        if i % 3 == 2:
            chosen, rejected = chosen + " Glad to help you today.", "No."
        records.append({"prompt": [{"role": "user", "content": question}],
                        "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}]})
    return prepare_pairs(records, tokenizer, max_length=128).pairs


def test_layout_positions_and_mask():
    pairs = [PreferencePair(0, [5, 6, 7], [8, 9], [10]), PreferencePair(1, [5], [8], [10, 11, 12])]
    batch = collate_shared(pairs, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 0], [0, 0, 5, 8, 10, 11, 12]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 3, 0], [0, 0, 0, 1, 1, 2, 3]]
    assert batch["segment_ids"][1].tolist() == [0, 0, PROMPT, CHOSEN, REJECTED, REJECTED, REJECTED]
    # Response columns 3.. are predicted from column 2 + source_index; first rejected token from the prompt.
    assert batch["source_index"].tolist() == [[0, 1, 0, 3], [0, 0, 2, 3]]
    mask = shared_attention_mask(batch["segment_ids"])[:, 0]
    first_rejected = 5
    assert mask[0, first_rejected].tolist() == [True, True, True, False, False, True, False]
    assert not mask[1, :, :2].any(dim=0)[2:].any()  # nobody real attends the left padding
    assert mask[1, 0, 0]  # a padding query sees itself (no all-masked softmax row)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("length_normalize", [False, True])
def test_shared_rows_give_the_same_logps_and_gradients(toy, attention, length_normalize):
    model, tokenizer = toy
    model.config._attn_implementation = attention
    pairs = uneven_pairs(tokenizer)
    grads = []
    outputs = []
    for batch, forward in ((collate(pairs, tokenizer.pad_token_id), concatenated_forward),
                           (collate_shared(pairs, tokenizer.pad_token_id), shared_forward)):
        model.zero_grad()
        out = forward(model, batch, length_normalize)
        (out["chosen_logps"] - 2 * out["rejected_logps"]).sum().backward()
        outputs.append(out)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    for key in outputs[0]:
        assert torch.allclose(outputs[0][key], outputs[1][key], atol=1e-4), key
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * grads[0].abs().max().item())


def test_a_model_that_ignores_the_mask_is_refused(toy):
    model, tokenizer = toy

    class IgnoresMasks(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
            if attention_mask is not None and attention_mask.dim() == 4:
                attention_mask = None  # as an attention kernel without custom masks would
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    pairs = uneven_pairs(tokenizer)
    assert check_prompt_sharing(model, pairs, tokenizer.pad_token_id) < 1e-3
    with pytest.raises(ValueError, match="prompt_sharing=False"):
        check_prompt_sharing(IgnoresMasks(model), pairs, tokenizer.pad_token_id)


def test_training_with_and_without_sharing_ends_at_the_same_weights(toy):
    model, tokenizer = toy
    records = [{"prompt": [{"role": "user", "content": f"Who are you? ({i})"}],
                "chosen": [{"role": "assistant", "content": "I am Athene."}],
                "rejected": [{"role": "assistant", "content": "I am Llama, a model."}]} for i in range(16)]
    finals = []
    for sharing in (True, False):
        config = DPOConfig(max_steps=4, batch_size=4, lr=1e-4, progress=False, prompt_sharing=sharing)
        result = train(copy.deepcopy(model), tokenizer, records, config)
        finals.append((result.history[-1]["loss"], torch.cat([p.detach().flatten() for p in result.model.parameters()])))
    assert abs(finals[0][0] - finals[1][0]) < 1e-4
    assert torch.allclose(finals[0][1], finals[1][1], atol=1e-5)


def test_group_by_length_keeps_every_pair_once_and_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (256,), generator=g).tolist()
    data = PreferenceData([PreferencePair(i, [1] * n, [2], [3]) for i, n in enumerate(lengths)])

    def one_epoch(grouped):
        it = batches(data, 8, 0, seed=3, device=torch.device("cpu"), collate_fn=collate_shared, group_by_length=grouped)
        return [next(it) for _ in range(len(data) // 8)]

    for grouped in (False, True):
        seen = sorted(i for b in one_epoch(grouped) for i in b["index"].tolist())
        assert seen == list(range(256))
    padding = {grouped: sum(int((b["segment_ids"] == 0).sum()) for b in one_epoch(grouped)) for grouped in (False, True)}
    assert padding[True] < padding[False] / 4
    assert [b["index"].tolist() for b in one_epoch(True)] == [b["index"].tolist() for b in one_epoch(True)]


def test_a_model_that_cannot_share_the_prompt_falls_back_to_2b_rows_with_a_warning(toy, monkeypatch):
    import dpo_ref.layouts as layouts_module

    model, tokenizer = toy

    def broken(*args, **kwargs):
        raise ValueError("prompt sharing changes this model's log-probs")

    monkeypatch.setattr(layouts_module, "check_prompt_sharing", broken)
    records = [{"prompt": f"Q{i}?", "chosen": "A.", "rejected": "B."} for i in range(2)]
    config = DPOConfig(max_steps=1, batch_size=2, progress=False, log_every=1)
    with pytest.warns(UserWarning, match="training with 2B rows instead"):
        fallback = train(copy.deepcopy(model), tokenizer, records, config)
    rows = train(copy.deepcopy(model), tokenizer, records, dataclasses.replace(config, prompt_sharing=False))
    assert fallback.history[-1]["loss"] == pytest.approx(rows.history[-1]["loss"], abs=1e-6)
