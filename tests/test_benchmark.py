"""The benchmark's engines stay runnable and do the same work (its figures come from benchmarks/bench_dpo.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks" / "bench_dpo.py"
sys.path.insert(0, str(BENCH.parent))


@pytest.mark.slow
def test_each_engine_trains_the_same_tokens(toy_dir, tmp_path):
    from dpo_ref.lab.synthetic_pairs import write_pairs

    data = write_pairs(tmp_path / "pairs.jsonl", 16, (12, 27), (2, 6), max_length=128)
    results = {}
    for engine, mode in (("dpo_ref", "copy"), ("trl", "copy"), ("minimal", "lora")):
        cmd = [sys.executable, str(BENCH), "worker", "--engine", engine, "--model", str(toy_dir), "--data", str(data),
               "--mode", mode, "--threads", "1", "--steps", "1", "--warmup", "1", "--batch", "8", "--max-length", "128"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        assert out.returncode == 0 and lines, out.stderr[-2000:]
        results[engine] = json.loads(lines[-1][len("RESULT "):])
        assert results[engine]["pairs_per_s"] > 0 and results[engine]["peak_rss_mb"] > 0
    # Same tokenization of the same pairs: the comparison is like for like.
    assert results["dpo_ref"]["tokens_per_pair"] == results["trl"]["tokens_per_pair"]
