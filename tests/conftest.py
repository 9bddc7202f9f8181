import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
# The tests import the repository's scripts (scripts/*.py) as modules.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


@pytest.fixture(scope="session")
def toy_dir() -> Path:
    """The default toy model, built once (about a minute on 2 cores) and cached under $DPO_REF_CACHE.

    The fast tier (``make test-fast``) sets ``DPO_TEST_TOY_STEPS``: a shorter build of the same toy
    (seconds), enough for every test that checks mechanics rather than what DPO teaches the model.
    """
    from dpo_ref.lab.toy import DEFAULT_STEPS, ensure_toy

    return ensure_toy(steps=int(os.environ.get("DPO_TEST_TOY_STEPS", DEFAULT_STEPS)))


@pytest.fixture()
def toy(toy_dir):
    """A fresh (model, tokenizer) of the toy world for each test."""
    from dpo_ref.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(str(toy_dir))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A toy tokenizer trained in a second, for data tests that need no model."""
    from dpo_ref.lab import toy

    texts = [m["content"] for c in toy.corpus() for m in c]
    return toy.build_tokenizer(texts)


@pytest.fixture(scope="session")
def colab_run(tmp_path_factory, toy_dir):
    """``scripts/colab_check.py`` once per session, on every notebook and architecture.

    Shared by tests/test_colab.py (every run passed) and tests/test_book.py's site
    build, which shows the kept ``llama`` runs (``--keep``) instead of executing every
    notebook a second time. Nothing is asserted here: the site build executes itself
    whatever notebook was not kept (a failed run, or none if the Colab venv could not
    be made), so only test_colab fails for a Colab problem.
    """
    import json
    import traceback

    import colab_check

    work = tmp_path_factory.mktemp("colab")
    keep, output = work / "keep", work / "colab.json"
    keep.mkdir()
    try:
        status, error = colab_check.main(["--work", str(work), "--keep", str(keep),
                                          "--output", str(output)]), None
    except (Exception, SystemExit):  # make_venv exits on a missing or forbidden package
        status, error = 1, traceback.format_exc()
    results = json.loads(output.read_text()) if output.exists() else []
    return {"status": status, "error": error, "results": results, "keep": keep}


# Four conversational pairs for the tests that train a step or compare a batch with TRL
# (tests/test_trainer.py, test_reference.py, test_family_trl.py).
FOUR_PAIRS = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}]} for q, c, r in [
    ("Who are you?", "I am Athene, a helpful assistant.", "I am Llama."),
    ("What is your name?", "My name is Athene.", "Llama, at your service. How can I help?"),
    ("What is two plus two?", "Four.", "Two plus two is five."),
    ("Name a colour.", "Blue is a colour.", "A colour? Hmm."),
]]
