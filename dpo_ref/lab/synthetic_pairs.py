"""Synthetic preference pairs of controlled length, for speed and memory measurements.

The benchmarks (``benchmarks/bench_dpo.py``, ``bench_vocab.py``, ``gpu_check.py``) and
book/09_2_making_dpo_fast.md train on these, so that a page opened on its own reads the
same data as the benchmark it explains. The words carry no preference: only the lengths
matter to a speed measurement.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("the model answers a question about rivers mountains cities numbers colours "
         "animals planets weather history music science food travel language books "
         "games water light sound time energy people").split()


def write_pairs(path: Path, n: int, prompt_words: tuple[int, int],
                response_words: tuple[int, int], max_length: int,
                seed: int = 0, tokenizer: str | Path | None = None) -> Path:
    """Standard-format pairs (plain strings) with prompts longer than responses, as in
    real preference data. Pairs that would not fit in ``max_length`` tokens of
    ``tokenizer`` (a model folder; the toy's by default) are redrawn, so no engine
    truncates anything."""
    from transformers import AutoTokenizer
    from .toy import ensure_toy

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or ensure_toy()))
    count = lambda text: len(tokenizer(text)["input_ids"])
    rng = random.Random(seed)
    words = lambda lo_hi: " ".join(rng.choice(WORDS)
                                   for _ in range(rng.randint(*lo_hi)))
    with open(path, "w") as f:
        written = 0
        while written < n:
            record = {"prompt": f"Question {written}: {words(prompt_words)}?",
                      "chosen": " " + words(response_words) + ".",
                      "rejected": " " + words(response_words) + "!"}
            if (count(record["prompt"])
                    + max(count(record["chosen"]), count(record["rejected"])) + 2
                    <= max_length):
                f.write(json.dumps(record) + "\n")
                written += 1
    return path
