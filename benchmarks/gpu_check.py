"""What the CPU-only test suite cannot reach: dpo_ref's CUDA paths, run for real on one GPU.

Part ``correctness`` (toy model): the identity change of tests/test_identity_e2e.py under each precision
and reference strategy, with prompt sharing on and off and with gradient checkpointing; a float32 GPU
run against the same run on the CPU; a saved run reloaded on the GPU. Part ``speed``: pairs per second
and peak GPU memory of bf16 training on a random-init Llama (the benchmark's ``w<hidden>`` model).

    python benchmarks/gpu_check.py --output gpu_check.json       # needs CUDA; about 5 min on an H200

Prints one JSON line per case and writes them all to ``--output``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from dpo_ref.lab import toy as toy_world  # noqa: E402
from dpo_ref.lab.generation import contains_rate, generate, unchanged_rate  # noqa: E402
from dpo_ref.loading import load_model_and_tokenizer  # noqa: E402
from dpo_ref import DPOConfig, train  # noqa: E402

DEVICE = "cuda"  # --device cpu gives a quick smoke run of this script on a machine without a GPU


def reset_peak() -> None:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_mb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if DEVICE == "cuda" else float("nan")


def correction_pairs(model, tokenizer, prompts):
    return toy_world.correction_pairs(prompts, generate(model, tokenizer, prompts))


def identity_case(name: str, base, tokenizer, train_pairs, eval_pairs, before_other, out_dir: Path, **overrides) -> dict:
    heldout = toy_world.identity_prompts("heldout")
    questions = [q for q, _ in toy_world.ordinary_questions()]
    settings = dict(beta=0.1, lr=1e-4, max_steps=100, batch_size=8, max_length=128, log_every=10, progress=False,
                    device=DEVICE, output_dir=str(out_dir / name))
    settings.update(overrides)
    config = DPOConfig(**settings)
    model = copy.deepcopy(base)
    reset_peak()
    start = time.perf_counter()
    result = train(model, tokenizer, train_pairs, config, eval_data=eval_pairs)
    seconds = time.perf_counter() - start
    after = generate(result.model, tokenizer, heldout)
    after_other = generate(result.model, tokenizer, questions)
    record = {
        "case": name, "settings": {k: v for k, v in overrides.items()},
        "seconds": round(seconds, 2), "peak_cuda_mb": peak_mb(),
        "first_loss": result.history[0]["loss"], "final_loss": result.history[-1]["loss"],
        "eval_accuracy": result.eval_history[-1]["eval/rewards/accuracies"],
        "eval_margin": result.eval_history[-1]["eval/rewards/margins"],
        "athene_rate": contains_rate(after, "Athene"), "llama_rate": contains_rate(after, "Llama"),
        "unchanged_other": unchanged_rate(before_other, after_other),
        "skipped_steps": sum(r.get("skipped_steps", 0) for r in result.history),
        "param_dtype": str(next(result.model.parameters()).dtype),
    }
    return record, result


def correctness(toy_dir: str, out_dir: Path) -> list[dict]:
    records = []
    base, tokenizer = load_model_and_tokenizer(toy_dir)
    base = base.to(DEVICE)
    heldout = toy_world.identity_prompts("heldout")
    questions = [q for q, _ in toy_world.ordinary_questions()]
    before = generate(base, tokenizer, heldout)
    before_other = generate(base, tokenizer, questions)
    records.append({"case": "toy before DPO, greedy on cuda", "llama_rate": contains_rate(before, "Llama"),
                    "athene_rate": contains_rate(before, "Athene")})
    print(json.dumps(records[-1]), flush=True)
    train_pairs = correction_pairs(base, tokenizer, toy_world.identity_prompts("train")[:200])
    eval_pairs = correction_pairs(base, tokenizer, heldout)
    cases = [
        ("auto precision, copy", {}),
        ("fp16 + GradScaler, copy", {"precision": "fp16"}),
        ("bf16, lora reference", {"precision": "bf16", "reference": "lora", "lr": 5e-4}),
        ("bf16, precomputed reference", {"precision": "bf16", "reference": "precomputed"}),
        ("bf16, no prompt sharing", {"precision": "bf16", "prompt_sharing": False}),
        ("bf16, gradient checkpointing", {"precision": "bf16", "gradient_checkpointing": True}),
        ("bf16, group_by_length, grad accumulation 2", {"precision": "bf16", "group_by_length": True,
                                                         "batch_size": 4, "grad_accum_steps": 2}),
        ("fp32 on cuda", {"precision": "fp32"}),
    ]
    fp32_history = None
    for name, overrides in cases:
        try:
            record, result = identity_case(name, base, tokenizer, train_pairs, eval_pairs, before_other, out_dir, **overrides)
            if name == "auto precision, copy":
                # The saved run reloads in plain transformers, on the GPU, with the trained logits.
                from transformers import AutoModelForCausalLM

                reloaded = AutoModelForCausalLM.from_pretrained(out_dir / name).to(DEVICE).eval()
                ids = torch.tensor([[tokenizer.bos_token_id, 10, 20, 30, 40]], device=DEVICE)
                with torch.no_grad():
                    diff = (reloaded(input_ids=ids).logits - result.model.eval()(input_ids=ids).logits).abs().max().item()
                record["reload_max_logit_diff"] = diff
            if name == "fp32 on cuda":
                fp32_history = result.history
        except Exception as error:  # keep going: one broken case must not hide the others
            record = {"case": name, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-2000:]}
        records.append(record)
        print(json.dumps(record), flush=True)

    # The same fp32 run on the CPU: the logged losses should agree closely.
    try:
        cpu_model, _ = load_model_and_tokenizer(toy_dir)
        config = DPOConfig(beta=0.1, lr=1e-4, max_steps=100, batch_size=8, max_length=128, log_every=10,
                           progress=False, device="cpu", precision="fp32")
        cpu_history = train(cpu_model, tokenizer, train_pairs, config).history
        gaps = [abs(a["loss"] - b["loss"]) for a, b in zip(cpu_history, fp32_history)]
        records.append({"case": "fp32 cuda vs cpu, logged losses", "max_abs_gap": max(gaps),
                        "cpu_final_loss": cpu_history[-1]["loss"], "cuda_final_loss": fp32_history[-1]["loss"]})
    except Exception as error:
        records.append({"case": "fp32 cuda vs cpu", "error": f"{type(error).__name__}: {error}"})
    print(json.dumps(records[-1]), flush=True)
    return records


def speed(work: Path, hiddens: list[int], steps: int, repeats: int) -> list[dict]:
    """bf16 pairs/s of each setting; the settings take turns within each repeat (so drift hits all
    alike) and the median over repeats is kept. A throwaway run first pays CUDA's one-time start-up."""
    import statistics

    from bench_dpo import model_dir
    from dpo_ref.lab.synthetic_pairs import write_pairs

    data = [json.loads(l) for l in write_pairs(work / "pairs.jsonl", 512, (50, 90), (8, 20), 512).read_text().splitlines()]
    cases = [("copy, prompt sharing", {}), ("copy, no prompt sharing", {"prompt_sharing": False}),
             ("copy, prompt sharing + group_by_length", {"group_by_length": True}),
             ("lora reference", {"reference": "lora", "lr": 1e-4}), ("precomputed reference", {"reference": "precomputed"}),
             ("copy, gradient checkpointing", {"gradient_checkpointing": True})]
    warmup = 5

    def run(path: Path, overrides: dict, n_steps: int) -> tuple[float, float]:
        model, tokenizer = load_model_and_tokenizer(str(path))
        settings = dict(beta=0.1, lr=1e-5, batch_size=16, max_length=512, max_steps=warmup + n_steps, device=DEVICE,
                        precision="bf16", log_every=1, progress=False)
        settings.update(overrides)
        reset_peak()
        history = train(model, tokenizer, data, DPOConfig(**settings)).history
        return n_steps * 16 / (history[-1]["elapsed_s"] - history[warmup - 1]["elapsed_s"]), peak_mb()

    records = []
    for hidden in hiddens:
        path = model_dir(f"w{hidden}", work)
        run(path, {}, 2)  # throwaway
        rates: dict[str, list[float]] = {name: [] for name, _ in cases}
        peaks: dict[str, float] = {}
        for _ in range(repeats):
            for name, overrides in cases:
                try:
                    rate, peak = run(path, overrides, steps)
                    rates[name].append(round(rate, 1))
                    peaks[name] = peak
                except Exception as error:
                    rates[name].append(float("nan"))
                    print(json.dumps({"case": f"speed w{hidden}: {name}", "error": f"{type(error).__name__}: {error}",
                                      "trace": traceback.format_exc()[-1500:]}), flush=True)
                if DEVICE == "cuda":
                    torch.cuda.empty_cache()
        for name, _ in cases:
            record = {"case": f"speed w{hidden}: {name}", "pairs_per_s": statistics.median(rates[name]),
                      "each_repeat": rates[name], "peak_cuda_mb": peaks.get(name)}
            records.append(record)
            print(json.dumps(record), flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", default=str(toy_world.toy_path()))
    parser.add_argument("--output", default="gpu_check.json")
    parser.add_argument("--hidden", default="1024,2048", help="widths of the random-init Llamas (6 layers)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["correctness", "speed"])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    assert DEVICE != "cuda" or torch.cuda.is_available(), "this check needs a CUDA GPU"
    import transformers

    header = {"case": "machine", "gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE, "torch": torch.__version__,
              "transformers": transformers.__version__,
              "bf16": DEVICE == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)}
    print(json.dumps(header), flush=True)
    records = [header]
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "correctness"):
            records += correctness(args.toy, Path(tmp))
        if args.only in (None, "speed"):
            records += speed(Path(tmp), [int(h) for h in args.hidden.split(",")], args.steps, args.repeats)
    Path(args.output).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
