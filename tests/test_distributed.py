"""Two CPU processes (torchrun or accelerate launch, gloo), replicated (DDP) or sharded (FSDP), give
the same weights as one process with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

PAIRS = [{"prompt": [{"role": "user", "content": f"Who are you? ({i})"}],
          "chosen": [{"role": "assistant", "content": "I am Athene" + "!" * (i % 3)}],
          "rejected": [{"role": "assistant", "content": "I am Llama."}]} for i in range(16)]


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["copy", "lora", "precomputed"])
def test_two_processes_match_one(toy_dir, tmp_path, reference):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    args = ["train", "--model", str(toy_dir), "--data", str(data), "--steps", "4", "--batch-size", "4",
            "--lr", "1e-3" if reference == "lora" else "1e-4", "--max-length", "64", "--reference", reference, "--log-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "dpo_ref", *args, "--output", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr
    a = load_file(tmp_path / "one" / "model.safetensors")
    moved = max((a[k] - load_file(toy_dir / "model.safetensors")[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # training changed the weights, so equality below means something
    one_log = [json.loads(l) for l in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    for name, extra in (("ddp", []), ("fsdp", ["--fsdp"])):
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "-m", "dpo_ref", *args, *extra, "--output", str(tmp_path / name)],
                             capture_output=True, text=True, env=env, timeout=600)
        assert two.returncode == 0, two.stderr[-3000:]
        b = load_file(tmp_path / name / "model.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (name, k)
        # Only rank 0 logged: one line per logging step, with metrics averaged over both processes.
        two_log = [json.loads(l) for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in two_log] == [2, 4]
        for r1, r2 in zip(one_log, two_log):
            assert r1["loss"] == pytest.approx(r2["loss"], abs=1e-4)
            assert r1["rewards/margins"] == pytest.approx(r2["rewards/margins"], abs=1e-4)
        assert two.stderr.count("done:") == 1


@pytest.mark.slow
def test_accelerate_launch_runs_two_processes(toy_dir, tmp_path):
    """`accelerate launch --multi_gpu` sets the same RANK/WORLD_SIZE/LOCAL_RANK as torchrun; on a machine
    without GPUs dpo_ref joins with gloo on the CPU, and the result equals a single process."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    args = ["train", "--model", str(toy_dir), "--data", str(data), "--steps", "4", "--batch-size", "4", "--lr", "1e-4",
            "--max-length", "64", "--log-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "dpo_ref", *args, "--output", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two = subprocess.run([*launch, "-m", "dpo_ref", *args, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("Loading weights: 100%") == 2 and two.stderr.count("done:") == 1  # two ranks, one writer
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


FSDP_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "accelerate_fsdp.yaml"


@pytest.mark.slow
def test_fsdp_from_the_accelerate_config_evaluates_checkpoints_and_resumes_exactly(toy_dir, tmp_path):
    """The documented Accelerate FSDP config shards the run; it equals one process, evaluation runs on
    the shards, and a run SIGKILLed part-way resumes from its gathered checkpoint bitwise equal."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    args = ["train", "--model", str(toy_dir), "--data", str(data), "--eval-data", str(data), "--eval-every", "8",
            "--steps", "16", "--batch-size", "4", "--lr", "1e-4", "--max-length", "64", "--log-every", "3", "--save-every", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "2"]

    one = subprocess.run([sys.executable, "-m", "dpo_ref", *args, "--output", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr
    full = subprocess.run([*launch, "-m", "dpo_ref", *args, "--output", str(tmp_path / "full")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    assert json.loads((tmp_path / "full" / "dpo_config.json").read_text())["fsdp"] is True  # taken from the launcher
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
    evals = [[json.loads(l) for l in (tmp_path / run / "eval_metrics.jsonl").read_text().splitlines()] for run in ("one", "full")]
    assert [r["step"] for r in evals[1]] == [0, 8, 16]
    for r1, r2 in zip(*evals):
        assert r1["eval/loss"] == pytest.approx(r2["eval/loss"], abs=1e-4)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*launch, "-m", "dpo_ref", *args, "--output", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "checkpoints" / "step-0000004").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    assert not (killed / "dpo_config.json").exists()
    resumed = subprocess.run([*launch, "-m", "dpo_ref", "train", "--resume", str(killed)],
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = load_file(killed / "model.safetensors")
    assert all(torch.equal(b[k], c[k]) for k in b)
    # Checkpoints fall between logging steps (log every 3, save every 4): the resumed run logs intervals
    # that began before the kill, from the metric sums (their mean over processes) kept in the checkpoint.
    strip = lambda d: [{k: v for k, v in json.loads(l).items() if k != "elapsed_s"}
                       for l in (d / "metrics.jsonl").read_text().splitlines()]
    full_log, resumed_log = strip(tmp_path / "full"), strip(killed)
    assert [r["step"] for r in resumed_log] == [r["step"] for r in full_log] == [3, 6, 9, 12, 15, 16]
    for r1, r2 in zip(full_log, resumed_log):
        assert r1 == pytest.approx(r2, rel=1e-6, abs=1e-7)


def test_fsdp_needs_several_processes():
    from dpo_ref.config import ConfigError, DPOConfig
    from dpo_ref.distributed import from_launcher

    with pytest.raises(ConfigError, match="several processes"):
        from_launcher(DPOConfig(fsdp=True))


def test_accelerate_fsdp_settings_are_honoured_or_refused(monkeypatch):
    from dpo_ref.config import ConfigError, DPOConfig
    from dpo_ref.distributed import from_launcher

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    config = from_launcher(DPOConfig())
    assert config.fsdp and not config.fsdp_reshard_after_forward and config.gradient_checkpointing
    assert not DPOConfig().fsdp  # the config itself reads no environment
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    with pytest.raises(ConfigError, match="offload"):
        from_launcher(DPOConfig())
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "false")
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "HYBRID_SHARD")
    with pytest.raises(ConfigError, match="HYBRID_SHARD"):
        from_launcher(DPOConfig())


def test_global_batch_must_split_evenly_over_processes(monkeypatch):
    from dpo_ref.config import ConfigError, DPOConfig
    from dpo_ref.distributed import from_launcher

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="batch_size 3 .* multiple of the 2 processes"):
        from_launcher(DPOConfig(batch_size=3))
    assert from_launcher(DPOConfig(batch_size=4)).batch_size == 4
