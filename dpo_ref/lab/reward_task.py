"""A controlled task with a known ground-truth reward, for the studies (reward–KL
frontier, on-policy rounds, shortcut overfitting).

Each prompt holds two of the toy world's ordinary questions; the toy model answers one
of them, and which one varies from sample to sample. A fixed scorer, ``reward``, counts
the animal words in the answer. It plays the part of the sentiment classifier in the
paper's IMDb experiment: it labels the preference pairs (``best_and_worst``) and it
measures the result.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from .generation import generate_once
from .toy import GREETINGS, ordinary_questions

ANIMALS = frozenset({"cow", "cows", "bee", "bees", "spider", "spiders", "cat", "cats",
                     "mouse", "mice", "owl", "owls"})


def questions() -> list[str]:
    """The toy world's ordinary questions (each prompt holds two of them)."""
    return [q for q, _ in ordinary_questions()]


def task_prompts(n_test: int = 60) -> tuple[list[str], list[str]]:
    """``(train_prompts, test_prompts)``: test question pairs are never trained on;
    training pairs come with each of the toy world's greetings."""
    combos = [a + " " + b for a in questions() for b in questions() if a != b]
    random.Random(0).shuffle(combos)
    test = combos[:n_test]
    train = [g + c for c in combos[n_test:] for g in GREETINGS]
    random.Random(2).shuffle(train)
    return train, test


def reward(response: str) -> float:
    """The ground-truth reward: the number of animal words in the response (a fixed
    scorer)."""
    return float(sum(word in ANIMALS
                     for word in re.findall(r"[a-z]+", response.lower())))


def best_and_worst(model, tokenizer, prompts: Sequence[str], k: int,
                   seed: int) -> tuple[list[tuple[str, str, str]], float]:
    """``k`` samples (temperature 1) per prompt, paired best against worst by
    ``reward``; ties dropped.

    An empty sample (the model ended its answer at once) is left out of the ranking: it
    is no valid response for a preference record (``dpo_ref.data`` refuses it), whatever
    its reward. Returns the ``(prompt, best, worst)`` triples and the mean reward of all
    samples.
    """
    # drawn once per machine: the frontier and family studies draw the same ones
    samples = generate_once(model, tokenizer, [p for p in prompts for _ in range(k)],
                            do_sample=True, seed=seed)
    triples = []
    for i, prompt in enumerate(prompts):
        ranked = sorted((y for y in samples[i * k : (i + 1) * k] if y.strip()),
                        key=reward)
        if len(ranked) >= 2 and reward(ranked[-1]) > reward(ranked[0]):
            triples.append((prompt, ranked[-1], ranked[0]))
    return triples, sum(map(reward, samples)) / len(samples)
