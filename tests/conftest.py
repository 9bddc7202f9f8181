import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def toy_dir() -> Path:
    """The default toy model, built once (about a minute on 2 cores) and cached under $DPO_REF_CACHE.

    The fast tier (``make test-fast``) sets ``DPO_TEST_TOY_STEPS``: a shorter build of the same toy
    (seconds), enough for every test that checks mechanics rather than what DPO teaches the model.
    """
    from dpo_ref.toy import DEFAULT_STEPS, ensure_toy

    return ensure_toy(steps=int(os.environ.get("DPO_TEST_TOY_STEPS", DEFAULT_STEPS)))


@pytest.fixture()
def toy(toy_dir):
    """A fresh (model, tokenizer) of the toy world for each test."""
    from dpo_ref.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(str(toy_dir))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A toy tokenizer trained in a second, for data tests that need no model."""
    from dpo_ref import toy

    texts = [m["content"] for c in toy.corpus() for m in c]
    return toy.build_tokenizer(texts)
