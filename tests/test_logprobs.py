import torch

from dpo_ref.layouts import Layout
from dpo_ref.logprobs import concatenated_forward, sequence_logps


def brute_force(logits, ids, first_response, last):
    """Σ_t log softmax(logits[t-1])[ids[t]] over response positions, one token at a time."""
    total = 0.0
    for t in range(first_response, last + 1):
        total += torch.log_softmax(logits[t - 1].double(), -1)[ids[t]].item()
    return total


def test_sequence_logps_matches_brute_force_for_left_and_right_padding():
    g = torch.Generator().manual_seed(0)
    vocab, width = 11, 12
    # (prompt length, response length) per row
    shapes = [(3, 4), (5, 2), (2, 7), (4, 1)]
    for side in ("right", "left"):
        ids = torch.zeros(len(shapes), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        spans = []
        for row, (p, r) in enumerate(shapes):
            offset = 0 if side == "right" else width - p - r
            ids[row, offset : offset + p + r] = torch.randint(1, vocab, (p + r,), generator=g)
            mask[row, offset + p : offset + p + r] = 1
            spans.append((offset + p, offset + p + r - 1))
        logits = torch.randn(len(shapes), width, vocab, generator=g)
        logps, n_tokens = sequence_logps(logits, ids, mask)
        for row, (first, last) in enumerate(spans):
            assert abs(logps[row].item() - brute_force(logits[row], ids[row], first, last)) < 1e-4
            assert n_tokens[row].item() == shapes[row][1]


def test_padding_and_prompt_tokens_do_not_change_the_result():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 8, 7, generator=g)
    ids = torch.randint(0, 7, (1, 8), generator=g)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0]])
    base, _ = sequence_logps(logits, ids, mask)
    ids2, logits2 = ids.clone(), logits.clone()
    ids2[0, 6:] = 3  # change the padding tokens
    logits2[0, 6:] += 100.0  # and the logits at padding positions
    ids2[0, 1] = 5  # and a prompt token (it is never a target)
    logits2[0, 0] += 7.0  # and the logits that predict a prompt token
    assert torch.allclose(base, sequence_logps(logits2, ids2, mask)[0])


def test_concatenated_forward_equals_separate_forwards(toy):
    from dpo_ref.batching import collate
    from dpo_ref.data import prepare_pairs

    model, tokenizer = toy
    records = [
        {"prompt": [{"role": "user", "content": "Who are you?"}], "chosen": [{"role": "assistant", "content": "I am Athene."}],
         "rejected": [{"role": "assistant", "content": "I am Llama, a helpful assistant."}]},
        {"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Two plus two is five, I think."},
    ]
    data = prepare_pairs(records, tokenizer, max_length=64)
    batch = collate(data.pairs, tokenizer.pad_token_id)
    together = concatenated_forward(model, batch)
    for i, pair in enumerate(data.pairs):
        for name, response in (("chosen", pair.chosen_ids), ("rejected", pair.rejected_ids)):
            ids = torch.tensor([pair.prompt_ids + response])
            mask = torch.tensor([[0] * len(pair.prompt_ids) + [1] * len(response)])
            alone, n = sequence_logps(model(input_ids=ids).logits, ids, mask)
            assert torch.allclose(together[f"{name}_logps"][i], alone[0], atol=1e-4)
            assert together[f"{name}_tokens"][i] == n[0] == len(response)
    mean = Layout(mean=True).logps(model, batch)
    assert torch.allclose(mean["chosen_logps"], together["chosen_logps"] / together["chosen_tokens"])
