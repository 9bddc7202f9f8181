"""Side-by-side DPO training benchmark: dpo_ref vs TRL's DPOTrainer vs a minimal hand-written loop.

Every engine trains the same model on the same pairs with the same batch size, max_length, precision,
thread count and number of steps, each in its own process (peak memory is the process's peak resident
set). Engines are interleaved within each repeat and the median of the repeats is reported.

    python benchmarks/bench_dpo.py                  # everything (about 30 min on 2 CPU cores)
    python benchmarks/bench_dpo.py --quick          # one repeat, fewer steps: a smoke run
    python benchmarks/bench_dpo.py --only main      # main | techniques | scaling | wall | real
    python benchmarks/bench_dpo.py --only real --repeats 1 \
        --output benchmarks/results/cpu-smollm2.json  # the real model (~10 min)

Writes a JSON record of every run (``--output``, default benchmarks/results/latest.json) and prints tables.
TRL is a benchmark-only dependency (``pip install trl``); nothing in dpo_ref imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dpo_ref.lab.synthetic_pairs import write_pairs  # noqa: F401  (bench_vocab, gpu_check use it too)

HERE = Path(__file__).resolve().parent
BATCH, MAX_LENGTH, BETA, LR = 8, 128, 0.1, 1e-5
PARTS = ["main", "checkpointing", "techniques", "scaling", "wall", "real"]
REAL = "smollm2-135m-instruct"  # dpo_ref's name for the packaged GGUF (README)

# ---------------------------------------------------------------- models and data, built offline


def model_dir(name: str, root: Path) -> Path:
    """``toy``: the course's pretrained toy model. ``w<hidden>``: a random-init Llama on the toy tokenizer,
    6 layers, head size 64 (w384: 11.0M parameters, counted in book/09_2_making_dpo_fast.md). ``v<vocab>``: width 64, 2 layers and a large
    vocabulary (v151936: Qwen2.5's size), where the LM head dominates. Speed does not depend on what
    the weights learned."""
    from dpo_ref.lab.toy import ensure_toy

    if name == "toy":
        return ensure_toy()
    path = root / name
    if not (path / "config.json").exists():
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        hidden, vocab, layers = (int(name[1:]), None, 6) if name[0] == "w" else (64, int(name[1:]), 2)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir("toy", root)))
        config = LlamaConfig(vocab_size=vocab or len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                             num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                             max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                             tie_word_embeddings=False)
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path


# ---------------------------------------------------------------- one measured run (worker process)


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_dpo_ref(args, records) -> dict:
    import torch

    from dpo_ref import DPOConfig, prepare_pairs, train
    from dpo_ref.loading import load_model_and_tokenizer

    before_model = rss_mb()
    model, tokenizer = load_model_and_tokenizer(args.model)
    params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    data = prepare_pairs(records, tokenizer, args.max_length)
    config = DPOConfig(beta=BETA, lr=LR, batch_size=args.batch, max_length=args.max_length,
                       max_steps=args.warmup + args.steps, reference=args.mode, device="cpu", precision="fp32",
                       log_every=1, progress=False, prompt_sharing=not args.no_prompt_sharing,
                       group_by_length=args.group_by_length, gradient_checkpointing=args.gradient_checkpointing,
                       lora=args.lora, **({"chunked_logps": args.chunked_logps == "on"}
                                          if args.chunked_logps != "auto" else {}))
    before = rss_mb()
    result = train(model, tokenizer, data, config)
    elapsed = [r["elapsed_s"] for r in result.history]
    tokens = [len(p.prompt_ids) * 2 + len(p.chosen_ids) + len(p.rejected_ids) for p in data.pairs]
    return {"seconds": elapsed[-1] - elapsed[args.warmup - 1], "rss_before_train_mb": before,
            "rss_before_model_mb": before_model, "params": params,
            "tokens_per_pair": statistics.mean(tokens),
            "prompt_tokens": statistics.mean(len(p.prompt_ids) for p in data.pairs),
            "response_tokens": statistics.mean((len(p.chosen_ids) + len(p.rejected_ids)) / 2
                                               for p in data.pairs),
            "final_loss": result.history[-1]["loss"]}


def run_trl(args, records) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    before_model = rss_mb()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *_, **__):
            times.append(time.perf_counter())

    peft_config = None
    if args.mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(output_dir=out, beta=BETA, learning_rate=LR, per_device_train_batch_size=args.batch,
                           max_length=args.max_length, max_steps=args.warmup + args.steps, use_cpu=True, bf16=False,
                           fp16=False, precompute_ref_log_probs=args.mode == "precomputed", report_to=[],
                           save_strategy="no", logging_steps=10_000, disable_tqdm=True, dataloader_num_workers=0,
                           lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, seed=0,
                           # TRL turns gradient checkpointing on by default; off, it does the same work as the others.
                           gradient_checkpointing=args.gradient_checkpointing)
        trainer = DPOTrainer(model=args.model, args=config, train_dataset=Dataset.from_list(records),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[StepTimes()])
        columns = trainer.train_dataset.column_names
        lengths = [len(trainer.train_dataset[i]["prompt_ids"]) * 2 + len(trainer.train_dataset[i]["chosen_ids"])
                   + len(trainer.train_dataset[i]["rejected_ids"]) for i in range(len(trainer.train_dataset))] \
            if "prompt_ids" in columns else [float("nan")]
        before = rss_mb()
        trainer.train()
    return {"seconds": times[-1] - times[args.warmup - 1], "rss_before_train_mb": before,
            "rss_before_model_mb": before_model, "tokens_per_pair": statistics.mean(lengths)}


def run_minimal(args, records) -> dict:
    """The floor: one concatenated forward over 2B right-padded rows, log-softmax gather, AdamW."""
    import copy

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    policy = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    rows = []
    for r in records:
        prompt = tokenizer(r["prompt"])["input_ids"]
        chosen = tokenizer(r["chosen"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rejected = tokenizer(r["rejected"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt, chosen, rejected))

    def collate(chunk):
        seqs = [p + c for p, c, _ in chunk] + [p + r for p, _, r in chunk]
        starts = [len(p) for p, _, _ in chunk] * 2
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
        attention = torch.zeros_like(ids)
        mask = torch.zeros_like(ids, dtype=torch.float32)
        for i, (s, start) in enumerate(zip(seqs, starts)):
            ids[i, : len(s)], attention[i, : len(s)], mask[i, start : len(s)] = torch.tensor(s), 1, 1.0
        return ids, attention, mask

    def logps(model, ids, attention, mask):
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        per_token = torch.gather(logits.log_softmax(-1), 2, ids[:, 1:, None]).squeeze(-1)
        return (per_token * mask[:, 1:]).sum(-1)

    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
        reference = None
    elif args.mode == "copy":
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    batches = [collate(rows[i : i + args.batch]) for i in range(0, len(rows) - args.batch + 1, args.batch)]
    ref_cache = {}
    if args.mode == "precomputed":
        with torch.no_grad():
            for b, batch in enumerate(batches):
                ref_cache[b] = logps(policy, *batch)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    before = rss_mb()
    times = []
    for step in range(args.warmup + args.steps):
        b = step % len(batches)
        ids, attention, mask = batches[b]
        policy_logps = logps(policy, ids, attention, mask)
        with torch.no_grad():
            if args.mode == "precomputed":
                ref_logps = ref_cache[b]
            elif args.mode == "lora":
                with policy.disable_adapter():
                    ref_logps = logps(policy, ids, attention, mask)
            else:
                ref_logps = logps(reference, ids, attention, mask)
        ratios = policy_logps - ref_logps
        n = args.batch
        loss = -F.logsigmoid(BETA * (ratios[:n] - ratios[n:])).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
    return {"seconds": times[-1] - times[args.warmup - 1], "rss_before_train_mb": before}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    records = [json.loads(line) for line in open(args.data)]
    run = {"dpo_ref": run_dpo_ref, "trl": run_trl, "minimal": run_minimal}[args.engine]
    out = run(args, records)
    out["pairs_per_s"] = args.steps * args.batch / out["seconds"]
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------- the real model


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate, GFLOP/s with ``threads`` threads: the best of
    ``repeats`` products of two ``size``×``size`` matrices (the denominator of CPU
    MFU)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def model_flops_per_pair(params: int, tokens: float, mode: str) -> float:
    """A step's model FLOPs per pair: 6·N·T for the policy's forward and backward (4·N·T
    with LoRA, which computes no weight gradients of the base), plus 2·N·T for the
    reference's forward unless it was precomputed; T the tokens the trainer runs for
    a pair."""
    policy = (4 if mode == "lora" else 6) * params * tokens
    return policy + (0 if mode == "precomputed" else 2 * params * tokens)


def add_mfu(medians: dict, mode: str, matmul_gflops: float) -> None:
    """CPU MFU of each engine: model FLOPs per second over the measured matmul rate.
    dpo_ref runs a pair's prompt once (prompt sharing, on in these runs): prompt +
    chosen + rejected tokens; TRL runs two rows: 2·prompt + chosen + rejected."""
    ours = medians["dpo_ref"]
    for engine, m in medians.items():
        tokens = (ours["prompt_tokens"] + 2 * ours["response_tokens"]
                  if engine == "dpo_ref" else ours["tokens_per_pair"])
        flops = model_flops_per_pair(ours["params"], tokens, mode)
        m["tokens_run_per_pair"] = tokens
        m["mfu"] = m["pairs_per_s"] * flops / (matmul_gflops * 1e9)


def real_model(work: Path, threads: int, steps: int, warmup: int, repeats: int,
               log) -> dict:
    """dpo_ref and TRL on the packaged SmolLM2-135M-Instruct: pairs/s, peak RSS and
    CPU MFU per reference strategy, chunked and full log-probs, and the memory
    estimate of ``dpo_ref.lab.memory`` beside the measured peak."""
    from dpo_ref.lab.memory import Shape, training_memory
    from dpo_ref.loading import resolve

    folder = Path(resolve(REAL))  # converted once into the cache
    config = json.loads((folder / "config.json").read_text())
    shape = Shape(REAL, config["hidden_size"], config["num_hidden_layers"],
                  config["intermediate_size"], config["num_attention_heads"],
                  config["num_key_value_heads"], config["vocab_size"],
                  tied=config.get("tie_word_embeddings", False))
    data = write_pairs(work / "pairs-real.jsonl", BATCH * (steps + warmup), (12, 27),
                       (2, 6), MAX_LENGTH, tokenizer=folder)
    peak = matmul_gflops(threads)
    out = {"model": REAL, "matmul_gflops": peak, "shape_params": shape.params(),
           "runs": {}}
    log(f"  {REAL}: fp32 matmul {peak:.0f} GFLOP/s with {threads} threads")
    kw = dict(model=folder, data=data, threads=threads, steps=steps, warmup=warmup)
    cases = {mode: {"dpo_ref": ("dpo_ref", dict(kw, mode=mode)),
                    "trl": ("trl", dict(kw, mode=mode))}
             for mode in ("copy", "lora", "precomputed")}
    cases["copy, full logits"] = {"dpo_ref": ("dpo_ref", dict(
        kw, mode="copy", extra=("--chunked-logps", "off")))}
    for label, engines in cases.items():
        medians = compare(f"{REAL} {label}", engines, repeats, log)
        mode, chunked = label.split(",")[0], "full logits" not in label
        ours = medians["dpo_ref"]
        add_mfu(medians, mode, peak)
        for m in medians.values():
            m["measured_mb"] = m["peak_rss_mb"] - m["rss_before_model_mb"]
        estimate = training_memory(
            shape, reference=mode, batch=BATCH, prompt_tokens=ours["prompt_tokens"],
            response_tokens=ours["response_tokens"], chunked=chunked, act_bytes=4)
        ours["estimate_mb"] = {k: v / 2**20 for k, v in estimate.items()}
        out["runs"][label] = medians
    return out


# ---------------------------------------------------------------- the driver


def measure(engine: str, model: Path, data: Path, mode: str, threads: int, steps: int, warmup: int,
            max_length: int = MAX_LENGTH, extra: tuple[str, ...] = (), batch: int = BATCH) -> dict:
    cmd = [sys.executable, __file__, "worker", "--engine", engine, "--model", str(model), "--data", str(data),
           "--mode", mode, "--threads", str(threads), "--steps", str(steps), "--warmup", str(warmup),
           "--batch", str(batch), "--max-length", str(max_length), *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               TRANSFORMERS_VERBOSITY="error", HF_DATASETS_DISABLE_PROGRESS_BARS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{engine} {mode} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def median_runs(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}


def compare(label: str, engines: dict[str, tuple], repeats: int, log) -> dict:
    """Run each engine ``repeats`` times, interleaved; return medians keyed by engine."""
    runs: dict[str, list] = {name: [] for name in engines}
    for _ in range(repeats):
        for name, (engine, kwargs) in engines.items():
            runs[name].append(measure(engine, **kwargs))
    medians = {name: median_runs(r) | {"runs": r} for name, r in runs.items()}
    log(f"  {label}: " + "  ".join(f"{n} {m['pairs_per_s']:.1f} pairs/s, {m['peak_rss_mb']:.0f} MB"
                                     for n, m in medians.items()))
    return medians


def identity_wall_time(engine: str, threads: int, steps: int, work: Path) -> float:
    """Whole-process wall time of a short identity run on the toy model, from a cold interpreter."""
    from dpo_ref.lab.toy import identity_answer, identity_prompts

    data = work / "identity.jsonl"
    with open(data, "w") as f:
        for p in identity_prompts("train"):
            f.write(json.dumps({"prompt": [{"role": "user", "content": p}],
                                "chosen": [{"role": "assistant", "content": identity_answer(p, "Athene")}],
                                "rejected": [{"role": "assistant", "content": identity_answer(p, "Llama")}]}) + "\n")
    out = work / f"identity-{engine}"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    toy = str(model_dir("toy", work))
    if engine == "dpo_ref":
        cmd = [sys.executable, "-m", "dpo_ref", "train", "--model", toy, "--data", str(data), "--output", str(out),
               "--steps", str(steps), "--batch-size", "8", "--lr", "1e-4", "--beta", "0.1", "--device", "cpu"]
    else:
        cmd = [sys.executable, str(HERE / "trl_identity.py"), toy, str(data), str(out), str(steps)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{engine} identity run failed:\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 4 measured steps")
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(HERE / "results" / "latest.json"))
    args = parser.parse_args()
    repeats, steps, warmup = (1, 4, 2) if args.quick else (args.repeats, 10, 3)
    parts = args.only or PARTS
    work = Path(os.environ.get("DPO_REF_CACHE", Path.home() / ".cache" / "dpo_ref")) / "bench"
    work.mkdir(parents=True, exist_ok=True)
    import torch
    import transformers
    import trl

    record = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "threads": args.threads,
              "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
              "batch": BATCH, "max_length": MAX_LENGTH, "steps": steps, "warmup": warmup, "repeats": repeats,
              "precision": "fp32", "command": " ".join(["python", "benchmarks/bench_dpo.py", *sys.argv[1:]])}
    log = lambda *a: print(*a, flush=True)
    log(f"# {record['machine']}, {args.threads} threads, torch {torch.__version__}, trl {trl.__version__}, "
        f"batch {BATCH}, {steps} steps after {warmup} warm-up, median of {repeats}")
    # About 80-token prompts and 20-token responses (lengths vary): prompts longer than responses.
    long_prompts = write_pairs(work / "pairs.jsonl", 200, (12, 27), (2, 6), MAX_LENGTH)
    common = dict(threads=args.threads, steps=steps, warmup=warmup)

    def save() -> None:  # after every part: a long run that fails later keeps what it measured
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=1))

    if "main" in parts:
        record["main"] = {}
        for size in ("toy", "w384"):
            for mode in ("copy", "lora", "precomputed"):
                kw = dict(model=model_dir(size, work), data=long_prompts, mode=mode, **common)
                record["main"][f"{size}/{mode}"] = compare(f"{size} {mode}", {
                    "dpo_ref": ("dpo_ref", kw), "trl": ("trl", kw), "minimal": ("minimal", kw)}, repeats, log)
                save()

    if "checkpointing" in parts:
        record["checkpointing"] = {}
        for mode in ("copy", "lora", "precomputed"):
            kw = dict(model=model_dir("w384", work), data=long_prompts, mode=mode, extra=("--gradient-checkpointing",), **common)
            record["checkpointing"][f"w384/{mode}"] = compare(f"w384 {mode}, gradient checkpointing (TRL's default)", {
                "dpo_ref": ("dpo_ref", kw), "trl": ("trl", kw)}, repeats, log)
            save()

    if "techniques" in parts:
        kw = dict(model=model_dir("w384", work), data=long_prompts, mode="copy", **common)
        record["techniques"] = compare("w384, dpo_ref techniques", {
            "copy reference, 2B rows (no prompt sharing)": ("dpo_ref", dict(kw, extra=("--no-prompt-sharing",))),
            "copy reference, prompt sharing (default)": ("dpo_ref", kw),
            "copy reference, prompt sharing + group_by_length": ("dpo_ref", dict(kw, extra=("--group-by-length",))),
            "precomputed reference, prompt sharing": ("dpo_ref", dict(kw, mode="precomputed")),
            "LoRA, reference = adapters off": ("dpo_ref", dict(kw, mode="lora")),
            "LoRA, precomputed reference (policy alone)": ("dpo_ref", dict(kw, mode="precomputed", extra=("--lora",))),
        }, repeats, log)
        save()

    if "scaling" in parts:
        record["scaling"] = {}
        for label, size, words, length in (("seq 64", "w384", ((5, 11), (1, 3)), 64),
                                           ("seq 128", "w384", ((12, 27), (2, 6)), 128),
                                           ("seq 256", "w384", ((26, 57), (4, 13)), 256),
                                           ("width 192", "w192", ((12, 27), (2, 6)), 128),
                                           ("width 768", "w768", ((12, 27), (2, 6)), 128)):
            data = write_pairs(work / f"pairs-{length}.jsonl", 200, *words, length)
            kw = dict(model=model_dir(size, work), data=data, mode="copy", max_length=length, **common)
            record["scaling"][label] = compare(label, {"dpo_ref": ("dpo_ref", kw), "trl": ("trl", kw)}, repeats, log)
            save()

    if "wall" in parts:
        record["wall"] = {}
        for engine in ("dpo_ref", "trl"):
            record["wall"][engine] = statistics.median(
                identity_wall_time(engine, args.threads, 100, work) for _ in range(repeats))
        log(f"  identity run, whole process: dpo_ref {record['wall']['dpo_ref']:.1f} s, trl {record['wall']['trl']:.1f} s")

    if "real" in parts:
        real_steps, real_warmup = (1, 1) if args.quick else (3, 1)
        record["real"] = real_model(work, args.threads, real_steps, real_warmup,
                                    repeats, log)
        record["real"] |= {"steps": real_steps, "warmup": real_warmup}
        save()

    save()
    print_tables(record)
    log(f"# written to {args.output}")


def print_tables(record: dict) -> None:
    if "main" in record:
        print("\n| model / reference | dpo_ref pairs/s | TRL pairs/s | minimal pairs/s | dpo_ref ÷ TRL | dpo_ref ÷ minimal "
              "| peak MB dpo_ref / TRL / minimal |")
        print("|---|---|---|---|---|---|---|")
        for key, m in record["main"].items():
            d, t, f = m["dpo_ref"], m["trl"], m["minimal"]
            print(f"| {key} | {d['pairs_per_s']:.1f} | {t['pairs_per_s']:.1f} | {f['pairs_per_s']:.1f} | "
                  f"{d['pairs_per_s'] / t['pairs_per_s']:.2f} | {d['pairs_per_s'] / f['pairs_per_s']:.2f} | "
                  f"{d['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} |")
    if "checkpointing" in record:
        print("\n| gradient checkpointing on (TRL's default) | dpo_ref pairs/s | TRL pairs/s | ratio | peak MB dpo_ref / TRL |"
              "\n|---|---|---|---|---|")
        for name, m in record["checkpointing"].items():
            d, t = m["dpo_ref"], m["trl"]
            print(f"| {name} | {d['pairs_per_s']:.1f} | {t['pairs_per_s']:.1f} | {d['pairs_per_s'] / t['pairs_per_s']:.2f} "
                  f"| {d['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} |")
    if "techniques" in record:
        print("\n| dpo_ref on w384 | pairs/s | peak MB |\n|---|---|---|")
        for name, m in record["techniques"].items():
            print(f"| {name} | {m['pairs_per_s']:.1f} | {m['peak_rss_mb']:.0f} |")
    if "scaling" in record:
        print("\n| setting | dpo_ref pairs/s | TRL pairs/s | ratio | peak MB dpo_ref / TRL |\n|---|---|---|---|---|")
        for name, m in record["scaling"].items():
            d, t = m["dpo_ref"], m["trl"]
            print(f"| {name} | {d['pairs_per_s']:.1f} | {t['pairs_per_s']:.1f} | {d['pairs_per_s'] / t['pairs_per_s']:.2f} "
                  f"| {d['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} |")
    if "real" in record:
        print("\n| real model | dpo_ref pairs/s | TRL pairs/s | MFU dpo_ref / TRL "
              "| peak MB dpo_ref / TRL | dpo_ref: measured / estimated MB |\n|---|---|---|---|---|---|")
        for name, m in record["real"]["runs"].items():
            d, t = m["dpo_ref"], m.get("trl")
            trl_cells = ((f"{t['pairs_per_s']:.2f}", f"{t['mfu']:.1%}", f"{t['peak_rss_mb']:.0f}")
                         if t else ("–", "–", "–"))
            print(f"| {name} | {d['pairs_per_s']:.2f} | {trl_cells[0]} | {d['mfu']:.1%} / {trl_cells[1]} "
                  f"| {d['peak_rss_mb']:.0f} / {trl_cells[2]} "
                  f"| {d['measured_mb']:.0f} / {sum(d['estimate_mb'].values()):.0f} |")
    if "wall" in record:
        w = record["wall"]
        print(f"\nidentity run (toy, 100 steps × 8 pairs), whole process: dpo_ref {w['dpo_ref']:.1f} s, "
              f"TRL {w['trl']:.1f} s, ratio {w['dpo_ref'] / w['trl']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        p = argparse.ArgumentParser()
        for name in ("--engine", "--model", "--data", "--mode"):
            p.add_argument(name, required=True)
        for name in ("--threads", "--steps", "--warmup", "--batch", "--max-length"):
            p.add_argument(name, type=int, required=True)
        p.add_argument("--no-prompt-sharing", action="store_true")
        p.add_argument("--group-by-length", action="store_true")
        p.add_argument("--gradient-checkpointing", action="store_true")
        p.add_argument("--lora", action="store_true")
        p.add_argument("--chunked-logps", choices=["auto", "on", "off"], default="auto")
        worker(p.parse_args(sys.argv[2:]))
    else:
        main()
