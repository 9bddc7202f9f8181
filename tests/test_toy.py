import torch

from dpo_ref import toy


def test_heldout_identity_prompts_never_appear_in_the_corpus():
    heldout = set(toy.identity_prompts("heldout"))
    seen = {c[0]["content"] for c in toy.corpus()}
    assert len(heldout) == 40 and not heldout & seen
    assert any(toy.TARGET_NAME in c[-1]["content"] for c in toy.corpus())  # the world knows the name


def test_build_is_deterministic_given_a_seed(tmp_path):
    from safetensors.torch import load_file

    a = toy.build_toy(tmp_path / "a", seed=3, steps=5, log=lambda *_: None)
    b = toy.build_toy(tmp_path / "b", seed=3, steps=5, log=lambda *_: None)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_tokenizer_encodes_unseen_names_losslessly(tiny_tokenizer):
    for text in ["I'm Athene.", "Zyxwvut Ωμέγα 名前 🦙"]:
        ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tiny_tokenizer.decode(ids) == text
