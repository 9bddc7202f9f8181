import json
import shutil
import subprocess
import sys

import pytest


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "dpo_ref", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def write_jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


PAIRS = [{"prompt": [{"role": "user", "content": f"Who are you? ({i})"}], "chosen": [{"role": "assistant", "content": "I am Athene."}],
          "rejected": [{"role": "assistant", "content": "I am Llama."}]} for i in range(8)]


@pytest.mark.slow
def test_train_writes_a_model_plain_transformers_loads(toy_dir, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "out"
    result = run_cli("train", "--model", toy_dir, "--data", data, "--output", out, "--steps", 3, "--batch-size", 4,
                     "--lr", 1e-4, "--max-length", 64, "--reference", "precomputed")
    assert result.returncode == 0, result.stderr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    # transformers writes model.safetensors with mode 600; dpo_ref gives it the umask's (the tests: 022)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in out.glob("*.safetensors")} == {"model.safetensors": "0o644"}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3] and "rewards/accuracies" in metrics[0]


@pytest.mark.parametrize(
    "lines,flags,message",
    [
        ([PAIRS[0], "{oops"], [], "line 2: not valid JSON"),
        ([PAIRS[0], {"prompt": "x", "chosen": "a"}], [], "line 2, field 'rejected': missing"),
        ([PAIRS[0]], ["--beta", "-1"], "beta must be > 0"),
        ([PAIRS[0]], ["--loss-type", "nope"], "unknown loss_type 'nope'"),
    ],
)
def test_bad_input_exits_with_a_one_line_message(toy_dir, tmp_path, lines, flags, message):
    data = write_jsonl(tmp_path / "bad.jsonl", lines)
    # The toy without its weights: had the CLI loaded the model before checking the data
    # and the config (it needs only the tokenizer for them), it would fail on the weights.
    model = tmp_path / "no-weights"
    shutil.copytree(toy_dir, model, ignore=shutil.ignore_patterns("*.safetensors"))
    result = run_cli("train", "--model", model, "--data", data, "--output", tmp_path / "out",
                     "--steps", 1, *flags)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out").exists()  # a rejected run leaves no run_args.json (nor a folder) behind


def test_toy_output_copies_the_cached_build_instead_of_retraining(toy_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DPO_REF_CACHE", str(toy_dir.parent))
    steps = toy_dir.name.split("-steps")[1] if "-steps" in toy_dir.name else "800"
    result = run_cli("toy", "--output", tmp_path / "copy", "--steps", steps)
    assert result.returncode == 0, result.stderr
    assert "pretraining step" not in result.stderr  # taken from the cache, not trained again
    assert (tmp_path / "copy" / "fingerprint.json").read_text() == (toy_dir / "fingerprint.json").read_text()
    assert oct((tmp_path / "copy" / "model.safetensors").stat().st_mode & 0o777) == "0o644"


def test_config_file_is_validated_before_loading_a_model(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"beta": 0.1, "learning_rate": 1e-5}))
    data = write_jsonl(tmp_path / "d.jsonl", PAIRS)
    result = run_cli("train", "--model", tmp_path / "does-not-exist", "--data", data, "--output", tmp_path / "o", "--config", tmp_path / "cfg.json")
    assert result.returncode == 2 and "unknown config field(s): learning_rate" in result.stderr


def test_cli_offers_the_family():
    from dpo_ref.cli import config_from_args, parse_args

    args = parse_args(["train", "--loss-type", "rdpo", "--rdpo-alpha", "0.02", "--reference", "tr",
                       "--ref-model-mixup-alpha", "0.5", "--ref-model-sync-steps", "8",
                       "--length-normalize"])
    config = config_from_args(args)
    assert (config.loss_type, config.rdpo_alpha, config.reference) == ("rdpo", 0.02, "tr")
    assert (config.ref_model_mixup_alpha, config.ref_model_sync_steps, config.mean_logps) == (0.5, 8, True)
