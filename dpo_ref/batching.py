"""Tokenized pairs → padded batches: the collator of the 2B-row layout and the
iterators over a dataset.

``collate`` stacks the chosen rows on top of the rejected ones, as the DPO authors'
``concatenated_inputs`` does, so one forward pass serves both responses
(``dpo_ref.prompt_sharing`` has the one-row-per-pair layout). ``batches`` is the
training order, ``in_order`` the fixed order of evaluation and of precomputing a
reference.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import torch

from .data import PreferenceData, PreferencePair
from .devices import to_device

Collate = Callable[[Sequence[PreferencePair], int], dict[str, torch.Tensor]]


def collate_rows(rows: Sequence[tuple[list[int], list[int]]],
                 pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded rows of ``prompt_ids + response_ids``; ``loss_mask`` marks the
    response tokens.

    Both masks are built from lengths, never from ``input_ids != pad_token_id`` (that
    would mask a real EOS when pad == eos).
    """
    width = max(len(prompt) + len(response) for prompt, response in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, response) in enumerate(rows):
        n = len(prompt) + len(response)
        input_ids[i, :n] = torch.tensor(prompt + response)
        attention_mask[i, :n] = 1
        loss_mask[i, len(prompt) : n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "loss_mask": loss_mask}


def collate(pairs: Iterable[PreferencePair],
            pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack B pairs into 2B right-padded rows: chosen sequences first, then rejected.

    ``index`` holds each pair's position in its dataset (to look up precomputed values).
    """
    pairs = list(pairs)
    rows = ([(p.prompt_ids, p.chosen_ids) for p in pairs]
            + [(p.prompt_ids, p.rejected_ids) for p in pairs])
    batch = collate_rows(rows, pad_token_id)
    batch["index"] = torch.tensor([p.index for p in pairs], dtype=torch.long)
    return batch


def batches(data: PreferenceData, batch_size: int, pad_id: int, seed: int,
            device: torch.device, skip: int = 0, rank: int = 0, world: int = 1,
            collate_fn: Collate = collate,
            group_by_length: bool = False) -> Iterator[dict]:
    """Endless shuffled batches, a new permutation each epoch, moved to ``device``.

    The order depends only on the seed, so skipping the first ``skip`` batches (to
    resume) gives exactly the batches an uninterrupted run would have seen next. With
    several processes each takes every ``world``-th pair of the same global batch.
    ``group_by_length`` sorts each window of ``GROUP_WINDOW`` batches by pair length
    before cutting it into batches (then shuffles those batches), so a batch holds pairs
    of similar length and carries little padding.
    """
    generator = torch.Generator().manual_seed(seed)
    per_epoch = len(data) // batch_size  # drop the ragged tail
    while True:
        order = (torch.randperm(len(data), generator=generator)
                 .tolist()[: per_epoch * batch_size])
        if group_by_length:
            order = _grouped_by_length(order, data, batch_size, generator)
        first = min(skip, per_epoch)
        skip -= first
        for b in range(first, per_epoch):
            indices = order[b * batch_size : (b + 1) * batch_size][rank::world]
            batch = collate_fn([data.pairs[i] for i in indices], pad_id)
            yield to_device(batch, device)


GROUP_WINDOW = 32  # batches sorted together by group_by_length


def _grouped_by_length(order: list[int], data: PreferenceData, batch_size: int,
                       generator) -> list[int]:
    def length(i: int) -> int:
        pair = data.pairs[i]
        return len(pair.prompt_ids) + len(pair.chosen_ids) + len(pair.rejected_ids)

    grouped = []
    window = GROUP_WINDOW * batch_size
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=length)
        cut = [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
        grouped += [i for b in torch.randperm(len(cut), generator=generator).tolist()
                    for i in cut[b]]
    return grouped


def in_order(data: PreferenceData, batch_size: int, pad_id: int, device: torch.device,
             collate_fn: Collate = collate) -> Iterator[tuple[int, dict]]:
    """Every pair once, in dataset order: ``(n_pairs, batch)`` per batch, the last one
    possibly smaller."""
    for start in range(0, len(data), batch_size):
        chunk = data.pairs[start : start + batch_size]
        yield len(chunk), to_device(collate_fn(chunk, pad_id), device)
