"""The studies' controlled task: the scorer, the prompt split, best-against-worst pairs,
and the samples they are drawn from, kept once per machine."""

import functools

import pytest
import torch

from dpo_ref.data import conversational_record
from dpo_ref.lab.generation import generate
from dpo_ref.lab.reward_task import best_and_worst, questions, reward, task_prompts


def test_reward_counts_animal_words_only():
    assert reward("Cats like to chase mice.") == 2.0
    assert reward("A COW says moo; bees buzz.") == 2.0
    assert reward("Grass is green. Catsup and beetles.") == 0.0  # whole words, not substrings


def test_test_question_pairs_are_never_trained_on():
    train, test = task_prompts()
    assert len(test) == 60 and len(set(test)) == 60
    assert not any(t in p for t in test for p in train)
    assert task_prompts() == (train, test)  # deterministic
    assert all(sum(q in p for q in questions()) >= 2 for p in test)


@pytest.mark.slow  # samples of the fully trained toy (the quick one names no animals)
def test_best_and_worst_pairs_rank_by_the_reward(toy):
    model, tokenizer = toy
    train, _ = task_prompts()
    triples, mean_reward = best_and_worst(model, tokenizer, train[:6], k=6, seed=0)
    # the same samples drawn again: the mean is over all of them, each pair is its
    # prompt's highest against its lowest reward
    samples = generate(model, tokenizer, [p for p in train[:6] for _ in range(6)],
                       do_sample=True, seed=0)
    assert mean_reward == pytest.approx(sum(map(reward, samples)) / len(samples))
    assert triples
    for prompt, best, worst in triples:
        own = [reward(y) for y in samples[6 * train.index(prompt):][:6] if y.strip()]
        assert prompt in train[:6] and reward(best) == max(own) > reward(worst) == min(own)
    assert conversational_record(*triples[0])["chosen"] == [{"role": "assistant", "content": triples[0][1]}]


def test_empty_samples_are_never_paired(monkeypatch):
    import dpo_ref.lab.reward_task as task

    samples = ["", "A cow says moo.", "Grass is green.", "", "Bees make honey.", ""]  # p2: one non-empty
    monkeypatch.setattr(task, "generate_once", lambda *args, **kwargs: list(samples))
    triples, mean_reward = task.best_and_worst(None, None, ["p1", "p2"], k=3, seed=0)
    assert triples == [("p1", "A cow says moo.", "Grass is green.")]
    assert mean_reward == 2 / 6  # the mean is over every sample, empty ones included


def test_samples_are_drawn_once_per_model_prompts_and_settings(toy, tmp_path, monkeypatch):
    import dpo_ref.lab.generation as generation

    monkeypatch.setenv("DPO_REF_CACHE", str(tmp_path))
    model, tokenizer = toy
    prompts = task_prompts()[0][:3]
    first = generation.generate_once(model, tokenizer, prompts, do_sample=True, seed=1)
    assert first == generate(model, tokenizer, prompts, do_sample=True, seed=1)
    calls = []
    real = generation.generate
    counted = functools.wraps(real)(lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(generation, "generate", counted)
    assert generation.generate_once(model, tokenizer, prompts, do_sample=True, seed=1) == first
    assert calls == []  # read back, not drawn again
    generation.generate_once(model, tokenizer, prompts, do_sample=True, seed=2)
    generation.generate_once(model, tokenizer, prompts[:2], do_sample=True, seed=1)
    generation.generate_once(model, tokenizer, prompts, do_sample=True, seed=1,
                             max_new_tokens=8)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    generation.generate_once(model, tokenizer, prompts, do_sample=True, seed=1)
    assert len(calls) == 4  # another seed, prompts, setting or weights: drawn anew
    assert len(list((tmp_path / "samples").glob("*.json"))) == 5
    assert not list((tmp_path / "samples").glob("*.tmp"))
