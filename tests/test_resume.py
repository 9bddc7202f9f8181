"""A run killed with SIGKILL part-way and resumed ends bitwise equal to the uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from dpo_ref.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

PAIRS = [{"prompt": [{"role": "user", "content": f"Who are you? ({i})"}],
          "chosen": [{"role": "assistant", "content": f"I am Athene, number {i}."}],
          "rejected": [{"role": "assistant", "content": "I am Llama."}]} for i in range(24)]


def train_cmd(toy_dir, data, out, *extra):
    return [sys.executable, "-m", "dpo_ref", "train", "--model", str(toy_dir), "--data", str(data), "--output", str(out),
            "--steps", "30", "--batch-size", "4", "--lr", "1e-4", "--max-length", "64", "--save-every", "5", "--log-every", "2", *extra]


def weights(path):
    return load_file(path / "model.safetensors")


@pytest.mark.slow
# TR-DPO's reference moves every 3 steps: killed after step 10, the run resumes only if the
# checkpoint kept the moved reference (rebuilding it from the model would not do)
@pytest.mark.parametrize("reference", [(), ("--reference", "tr", "--ref-model-sync-steps", "3")],
                         ids=["copy", "tr"])
def test_sigkill_then_resume_is_bitwise_equal_to_an_uninterrupted_run(toy_dir, tmp_path, reference):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same arithmetic in both runs, whatever the machine

    full = subprocess.run(train_cmd(toy_dir, data, tmp_path / "full", *reference), capture_output=True, text=True, env=env, timeout=600)
    assert full.returncode == 0, full.stderr

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(toy_dir, data, killed_dir, *reference), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed_dir / "checkpoints" / "step-0000010").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = latest_checkpoint(killed_dir)
    assert latest is not None and 10 <= load_checkpoint(latest).step < 30
    assert not (killed_dir / "dpo_config.json").exists()  # the unfinished run is not passed off as finished

    resumed = subprocess.run([sys.executable, "-m", "dpo_ref", "train", "--resume", str(killed_dir)],
                             capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "full"), weights(killed_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = lambda d: (d / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(l).items() if k != "elapsed_s"} for l in lines]
    assert strip(metrics(tmp_path / "full")) == strip(metrics(killed_dir))


def test_damaged_checkpoint_is_reported_not_loaded(tmp_path):
    (tmp_path / "checkpoints" / "step-0000005").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-0000005" / "meta.json").write_text('{"step": 5}')
    (tmp_path / "checkpoints" / "step-0000005" / "state.safetensors").write_bytes(b"\x00garbage")
    (tmp_path / "checkpoints" / ".tmp-step-0000010").mkdir()  # an interrupted save is never "latest"
    assert latest_checkpoint(tmp_path).name == "step-0000005"
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(latest_checkpoint(tmp_path))
    (tmp_path / "checkpoints" / "step-0000005" / "state.safetensors").unlink()
    with pytest.raises(CheckpointError, match="state.safetensors is missing"):
        load_checkpoint(latest_checkpoint(tmp_path))


def test_resume_needs_a_started_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dpo_ref", "train", "--resume", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "run_args.json" in result.stderr
