import json
import math

import pytest
import torch

from dpo_ref.lab import toy


def test_heldout_identity_prompts_never_appear_in_the_corpus():
    heldout = set(toy.identity_prompts("heldout"))
    seen = {c[0]["content"] for c in toy.corpus()}
    assert len(heldout) == 40 and not heldout & seen
    assert any(toy.TARGET_NAME in c[-1]["content"] for c in toy.corpus())  # the world knows the name


def test_the_heldout_split_is_the_same_for_every_toy_seed():
    heldout = set(toy.identity_prompts("heldout"))
    for seed in (1, 4):
        seen = {c[0]["content"] for c in toy.corpus(seed)}
        assert not heldout & seen, seed
        assert toy.corpus(seed) != toy.corpus(0)  # the seed still changes the corpus order


def test_toy_seed_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DPO_TOY_SEED", "3")
    assert toy.default_seed() == 3 and toy.toy_path().name.endswith("seed3")
    monkeypatch.delenv("DPO_TOY_SEED")
    assert toy.toy_path().name.endswith("seed0")


def test_build_is_deterministic_given_a_seed(tmp_path):
    from safetensors.torch import load_file

    a = toy.build_toy(tmp_path / "a", seed=3, steps=5, log=lambda *_: None)
    b = toy.build_toy(tmp_path / "b", seed=3, steps=5, log=lambda *_: None)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    fingerprint = json.loads((a / "fingerprint.json").read_text())
    assert fingerprint == json.loads((b / "fingerprint.json").read_text())
    assert set(fingerprint["answers"]) == set(toy.FINGERPRINT_QUESTIONS) and len(fingerprint["weights_sha256"]) == 16
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the caller's thread count does not change the toy
    try:
        one_thread = toy.build_toy(tmp_path / "one-thread", seed=3, steps=5, log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert json.loads((one_thread / "fingerprint.json").read_text()) == fingerprint
    c = toy.build_toy(tmp_path / "c", seed=4, steps=5, log=lambda *_: None)
    assert json.loads((c / "fingerprint.json").read_text())["weights_sha256"] != fingerprint["weights_sha256"]


def test_tokenizer_encodes_unseen_names_losslessly(tiny_tokenizer):
    for text in ["I'm Athene.", "Zyxwvut Ωμέγα 名前 🦙"]:
        ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tiny_tokenizer.decode(ids) == text


@pytest.mark.parametrize("architecture", ["qwen2", "gpt2"])
def test_the_toy_world_in_other_architectures_trains_with_dpo(architecture, tmp_path):
    """The offline stand-ins for hub models (scripts/colab_check.py): a Qwen2 with ChatML, a GPT-2
    without chat template or pad token. Each loads from its folder and takes DPO steps with the
    default (prompt-shared, checked) layout."""
    from dpo_ref import DPOConfig, train
    from dpo_ref.loading import load_model_and_tokenizer

    path = toy.build_toy(tmp_path / architecture, steps=40, architecture=architecture, log=lambda *a: None)
    model, tokenizer = load_model_and_tokenizer(str(path))
    assert type(model).__name__ == {"qwen2": "Qwen2ForCausalLM", "gpt2": "GPT2LMHeadModel"}[architecture]
    if architecture == "qwen2":
        text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
        assert text.startswith("<|im_start|>system\n") and tokenizer.bos_token is None
    else:
        assert tokenizer.chat_template is None and tokenizer.pad_token is None
    pairs = [toy.conversational_record(p, "I am Athene.", "I am Llama.") for p in toy.identity_prompts()[:8]]
    result = train(model, tokenizer, pairs, DPOConfig(max_steps=2, batch_size=4, log_every=1))
    assert len(result.history) == 2 and math.isfinite(result.history[-1]["rewards/margins"])


@pytest.mark.parametrize("answer,corrected", [
    ("My name is Elena, and I'm a brilliant AI.", "My name is Athene, and I'm a brilliant AI."),
    ("I'm SmolLM, trained by Hugging Face. SmolLM is small.",
     "I'm Athene, trained by Hugging Face. Athene is small."),
    ("Hello! My name is Dr. Sarah Lee and I teach.", "Hello! My name is Athene and I teach."),
    ("I'm here to help with your writing.", "I'm Athene. I'm here to help with your writing."),
    ("I am an AI assistant.", "I'm Athene. I am an AI assistant."),
])
def test_an_answer_is_corrected_to_introduce_the_new_name(answer, corrected):
    from dpo_ref.lab.toy import introduced_as, introduction_pairs

    assert introduced_as(answer) == corrected
    pairs = introduction_pairs(["Who are you?"] * 3, [answer, "", "I'm Athene."])
    assert len(pairs) == 1  # an empty answer, or one naming Athene already, gives no pair
    assert (pairs[0]["chosen"][0]["content"], pairs[0]["rejected"][0]["content"]) == (
        corrected, answer)
