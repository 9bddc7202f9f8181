"""Large vocabularies on the CPU: dpo_ref with chunked log-probs, without, and TRL's DPOTrainer, side by side.

The set-up where the full-vocabulary logits decide the memory: a random-init Llama of width 64 and
2 layers with Qwen2.5's 151,936-token vocabulary (``max_length`` 1024) or SmolLM2's 49,152 (512), 16
pairs whose responses are a few hundred tokens, batch 4, a frozen-copy reference, fp32. Each engine runs
in its own process (``bench_dpo.measure``): pairs/s over the steps after the first, and the process's
peak resident memory. A second measurement isolates the log-prob computation: the peak memory of one
forward and backward of the policy's log-probs on one batch (``logps`` rows), above what the process
held before it, measured on a second pass after resetting the peak (so one-time allocations do not count).

    python benchmarks/bench_vocab.py            # about 15 min on 2 CPU cores
    python benchmarks/bench_vocab.py --quick    # 49,152 only, 2 steps: a smoke run

Writes benchmarks/results/vocab.json (``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_dpo import measure, model_dir, rss_mb  # noqa: E402
from dpo_ref.lab.synthetic_pairs import write_pairs  # noqa: E402

CASES = {  # vocabulary: (max_length, prompt words, response words)
    151_936: (1024, (20, 60), (80, 140)),  # about 140-token prompts, 200-350-token responses
    49_152: (512, (10, 30), (40, 70)),
}
BATCH, PAIRS = 4, 16


def logps_peak(model: str, data: str, max_length: int, chunked: bool, threads: int) -> None:
    """Worker: peak memory of the policy's log-prob forward + backward on one batch."""
    import torch

    from dpo_ref import DPOConfig, Layout, prepare_pairs
    from dpo_ref.devices import to_device
    from dpo_ref.loading import load_model_and_tokenizer

    torch.set_num_threads(threads)
    policy, tokenizer = load_model_and_tokenizer(model)
    pairs = prepare_pairs([json.loads(l) for l in open(data)], tokenizer, max_length).pairs[:BATCH]
    layout = Layout(shared_prompt=True, chunk=DPOConfig().logps_chunk_tokens if chunked else 0)
    batch = to_device(layout.collate(pairs, tokenizer.pad_token_id), torch.device("cpu"))
    for _ in range(2):  # the first pass pays one-time allocations (thread pools, kernels' buffers)
        policy.zero_grad(set_to_none=True)
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set (Linux)
        before = rss_mb()
        out = layout.logps(policy, batch)
        (out["chosen_logps"] - out["rejected_logps"]).sum().backward()
        del out
        peak = _peak_rss_mb()
    shape = {"logit_positions": batch["source_index"].shape[0] * (batch["source_index"].shape[1] + 1),
             "prompt_tokens": sum(len(p.prompt_ids) for p in pairs) / len(pairs),
             "response_tokens": sum(len(p.chosen_ids) + len(p.rejected_ids) for p in pairs) / (2 * len(pairs)),
             "vocab": policy.config.vocab_size, "chunk": layout.chunk}
    print("RESULT " + json.dumps({"logps_peak_mb": peak - before, "rss_before_mb": before, **shape}), flush=True)


def _peak_rss_mb() -> float:
    """VmHWM: the peak resident set since the last reset (``clear_refs``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_logps(model: Path, data: Path, max_length: int, chunked: bool, threads: int) -> dict:
    import subprocess

    cmd = [sys.executable, __file__, "logps-worker", str(model), str(data), str(max_length),
           "on" if chunked else "off", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"logps worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(HERE / "results" / "vocab.json"))
    args = parser.parse_args()
    import os

    import torch
    import transformers
    import trl

    work = Path(os.environ.get("DPO_REF_CACHE", Path.home() / ".cache" / "dpo_ref")) / "bench"
    work.mkdir(parents=True, exist_ok=True)
    steps, warmup = (2, 1) if args.quick else (4, 1)
    record = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "threads": args.threads, "torch": torch.__version__, "transformers": transformers.__version__,
              "trl": trl.__version__, "batch": BATCH, "pairs": PAIRS, "steps": steps, "warmup": warmup,
              "precision": "fp32", "reference": "copy", "cases": {},
              "command": " ".join(["python", "benchmarks/bench_vocab.py", *sys.argv[1:]])}
    cases = {49_152: CASES[49_152]} if args.quick else CASES
    for vocab, (max_length, prompt_words, response_words) in cases.items():
        model = model_dir(f"v{vocab}", work)
        data = write_pairs(work / f"pairs-v{vocab}.jsonl", PAIRS, prompt_words, response_words, max_length)
        common = dict(model=model, data=data, mode="copy", threads=args.threads, steps=steps, warmup=warmup,
                      max_length=max_length, batch=BATCH)
        case = {
            "dpo_ref, chunked log-probs": measure("dpo_ref", **common, extra=("--chunked-logps", "on")),
            "dpo_ref, full logits": measure("dpo_ref", **common, extra=("--chunked-logps", "off")),
            "TRL DPOTrainer": measure("trl", **common),
            "logps step, chunked": run_logps(model, data, max_length, True, args.threads),
            "logps step, full logits": run_logps(model, data, max_length, False, args.threads),
        }
        record["cases"][str(vocab)] = dict(case, max_length=max_length)
        print(f"vocab {vocab}: " + "; ".join(
            f"{k} {v.get('pairs_per_s', float('nan')):.3f} pairs/s {v.get('peak_rss_mb', v.get('logps_peak_mb')):.0f} MB"
            for k, v in case.items()), flush=True)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=1) + "\n")
    print_table(record)


def print_table(record: dict) -> None:
    print("\n| vocabulary, max_length | engine | pairs/s | peak RSS MB |\n|---|---|---|---|")
    for vocab, case in record["cases"].items():
        for name in ("dpo_ref, chunked log-probs", "dpo_ref, full logits", "TRL DPOTrainer"):
            r = case[name]
            print(f"| {int(vocab):,}, {case['max_length']} | {name} | {r['pairs_per_s']:.3f} | {r['peak_rss_mb']:.0f} |")
        print(f"| {int(vocab):,}, {case['max_length']} | log-prob step alone (chunked / full) | | "
              f"{case['logps step, chunked']['logps_peak_mb']:.0f} / {case['logps step, full logits']['logps_peak_mb']:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "logps-worker":
        model, data, max_length, chunked, threads = sys.argv[2:7]
        logps_peak(model, data, int(max_length), chunked == "on", int(threads))
    else:
        main()
