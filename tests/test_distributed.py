"""Two CPU processes (torchrun, gloo) give the same weights as one process with the same global batch."""

import json
import os
import subprocess
import sys

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
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "dpo_ref", *args, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    moved = max((a[k] - load_file(toy_dir / "model.safetensors")[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # training changed the weights, so equality below means something
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    # Only rank 0 logged: one line per logging step, with metrics averaged over both processes.
    one_log = [json.loads(l) for l in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two_log = [json.loads(l) for l in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
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
