"""Write the README's measured sections from the results files, never by hand.

Every number in the "Measured" section is a value a page glues (``dpo_ref.lab.findings.glue``), as recorded on every
seed by ``benchmarks/robustness.py`` in ``benchmarks/results/robustness.json``. The section shows each one as
its median over the seeds with the lowest and highest value, so a reader sees the spread.

The "Speed" section comes from ``benchmarks/results/cpu-1-thread.json`` and ``cpu-2-threads.json``
(``benchmarks/bench_dpo.py``), the paragraph on a GPU from ``benchmarks/results/gpu-h200.json``
(``benchmarks/gpu_check.py``), the large-vocabulary table from ``vocab.json`` (``benchmarks/bench_vocab.py``), the real
model beside TRL from ``cpu-smollm2.json`` (``benchmarks/bench_dpo.py --only real``)
and the set-up times from ``setup-times.json``. Ratios are computed from the stored values.

    python scripts/readme_results.py          # rewrite the section between the markers
    python scripts/readme_results.py --check  # exit 1 if README.md differs (tests/test_readme.py)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "robustness.json"
SETUP_TIMES = ROOT / "benchmarks" / "results" / "setup-times.json"  # benchmarks/setup_times.py
BEGIN, END = "<!-- measured:begin (scripts/readme_results.py) -->", "<!-- measured:end -->"
SETUP_BEGIN, SETUP_END = "<!-- setup-times:begin (scripts/readme_results.py) -->", "<!-- setup-times:end -->"
VOCAB = ROOT / "benchmarks" / "results" / "vocab.json"  # python benchmarks/bench_vocab.py
VOCAB_BEGIN, VOCAB_END = "<!-- vocab:begin (scripts/readme_results.py) -->", "<!-- vocab:end -->"
CPU_1 = ROOT / "benchmarks" / "results" / "cpu-1-thread.json"  # python benchmarks/bench_dpo.py --threads 1
CPU_2 = ROOT / "benchmarks" / "results" / "cpu-2-threads.json"  # python benchmarks/bench_dpo.py --threads 2 --only …
SPEED_BEGIN, SPEED_END = "<!-- speed:begin (scripts/readme_results.py) -->", "<!-- speed:end -->"
GPU = ROOT / "benchmarks" / "results" / "gpu-h200.json"  # python benchmarks/gpu_check.py on the device machine
GPU_BEGIN, GPU_END = "<!-- gpu:begin (scripts/readme_results.py) -->", "<!-- gpu:end -->"
REAL = ROOT / "benchmarks" / "results" / "cpu-smollm2.json"  # bench_dpo.py --only real
REAL_BEGIN, REAL_END = "<!-- real:begin (scripts/readme_results.py) -->", "<!-- real:end -->"

# {name|format}: a glued value; formats: pct (a share, shown in %), count, or a float format such as .2f.
TEMPLATE = """\
Each number below is the median over {seeds} seeds (toy build *and* run seeded alike:
`DPO_TOY_SEED = DPO_SEED = 0 … {last_seed}`) with the lowest and highest value in brackets, from
`benchmarks/results/robustness.json` (`python benchmarks/robustness.py`, {cpu}); the book shows seed 0.
Every claim the pages assert, with its worst case over the seeds and its threshold, is tabled in
`book/08_4_findings_over_seeds.md`.

On the offline toy model (0.85M parameters), DPO on {identity_n_pairs|count} correction-method pairs (β 0.1,
lr 1e-4, 100 steps of 8 pairs, frozen-copy reference) moved the greedy answers to 40 held-out identity
paraphrases from naming Llama in {identity_old_before|pct} to naming Athene in {identity_new_after|pct};
held-out reward accuracy ended at {identity_acc_after|pct}, and {identity_unchanged|pct} of 20 unrelated
answers stayed word for word the same (per-token KL to the reference, summed along the reference's own
greedy answers: {identity_kl_other|.3f} nats per answer; it says how far the next-token distributions moved
on those fixed answers, and is not an estimate of KL(π_θ‖π_ref), which needs answers sampled from π_θ;
`notebooks/06_1_identity.ipynb`). Without the σ weight
(`loss_type="unweighted"`, 300 steps), the same pairs reach a margin of {ablation_unweighted_margin|.1f}
against {ablation_sigmoid_margin|.1f} with it, and that per-token KL on unrelated answers of
{ablation_unweighted_KL_on_unrelated|.2f} nats against {ablation_sigmoid_KL_on_unrelated|.2f}
(`notebooks/06_2_sigma_ablation.ipynb`). At β = 1, held-out reward accuracy is
{beta_1.0_held-out_reward_accuracy|pct} but only {beta_1.0_names_Athene|pct} of the held-out answers name
Athene; at β = 0.1, {beta_0.1_names_Athene|pct} (`notebooks/06_3_beta_sweep.ipynb`).

The studies use a task with a ground-truth reward (two questions per prompt; a fixed scorer counts animal
words, {frontier_start_reward|.2f} per answer before training). Reward and sequence-level KL to the reference
(on samples from the policy) after {frontier_steps|count} steps (lr {frontier_lr|.0e}) on {frontier_n_pairs|count} pairs: DPO β 0.1 reaches
{frontier_DPO_0.1_reward|.2f} at {frontier_DPO_0.1_KL|.1f} nats, β 2 {frontier_DPO_2.0_reward|.2f} at
{frontier_DPO_2.0_KL|.1f}; `unweighted` {frontier_unweighted_0.1_reward|.2f} at
{frontier_unweighted_0.1_KL|.1f}; best-of-128 with the true scorer {frontier_bon128_reward|.2f} at
{frontier_bon128_KL|.2f} nats (`08_1_reward_kl_frontier.ipynb`). On one budget of prompts, samples and steps,
offline pairs reach {op_offline_reward|.2f} at {op_offline_kl|.1f} nats, on-policy rounds with a fixed
reference {op_fixed_reward|.2f} at {op_fixed_kl|.1f}, and with a stepwise (sDPO) reference
{op_stepwise_reward|.2f} at {op_stepwise_kl|.1f} (`08_2_on_policy_iterative.ipynb`). A sign-off on every chosen
answer appears in {so_marked_marker|pct} of sampled answers to unrelated questions, and on held-out pairs
whose better answer lacks it the model prefers the better answer in only {so_marked_conflict|pct}; with the
sign-off on both sides of each pair, {so_balanced_marker|pct} and {so_balanced_conflict|pct}
(`08_3_shortcut_overfitting.ipynb`).

The DPO family on the same task (`10_2_family_study.ipynb`; {family_steps|count} steps, lr {family_lr|.0e}, the same pairs for every
method, one run per toy model): after DPO at β 0.1 the chosen
responses of the training pairs changed in log-probability by {family_DPO_beta0.1_d_chosen|.1f} nats while
the margin grew by {family_DPO_beta0.1_d_margin|.1f}, and {family_DPO_beta0.1_displaced|pct} of the pairs
were displaced (chosen down, margin up). The methods that add a push on the chosen response of their own
(RPO and ORPO at every margin, DPO-Positive while it is below the reference, APO-zero through its own
log-ratio) kept it up: RPO
{family_RPO_d_chosen|.1f}, DPO-Positive {family_DPO-Positive_d_chosen|.1f}, ORPO {family_ORPO_d_chosen|.1f},
APO-zero {family_APO-zero_d_chosen|.1f} nats, at a KL of {family_RPO_KL|.1f}, {family_DPO-Positive_KL|.1f},
{family_ORPO_KL|.1f} and {family_APO-zero_KL|.1f} nats against {family_DPO_beta0.1_KL|.1f} for DPO. APO-down
(meant for pairs whose chosen answer is worse than the model's) ran to answers of {family_APO-down_length|.0f}
tokens (DPO: {family_DPO_beta0.1_length|.0f}) at a KL of {family_APO-down_KL|.0f} nats; not on
every toy model (the ranges), so the family page reports it and does not assert it.

Time to execute each page with one thread, two pages at a time (median over the sweep's runs):
{page_times}; {total_time} in all, so two kernels need about half of that.
"""


def glued_values(results: dict) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for run in sorted(results["runs"], key=lambda r: r["seed"]):
        for name, value in run.get("glued", {}).items():
            values.setdefault(name, []).append(value)
    return values


def fmt(value: float, spec: str) -> str:
    if spec == "pct":
        return f"{100 * value:.0f}"
    if spec == "count":
        return f"{value:.0f}"
    return format(value, spec)


def render(results: dict) -> str:
    values = glued_values(results)
    seeds = sorted({r["seed"] for r in results["runs"]})

    def one(match: re.Match) -> str:
        name, spec = match.group(1), match.group(2)
        if name not in values:
            raise KeyError(f"{name} is not glued by any page of the sweep")
        v = values[name]
        unit = " %" if spec == "pct" else ""
        median, low, high = fmt(statistics.median(v), spec), fmt(min(v), spec), fmt(max(v), spec)
        return f"{median}{unit}" if low == high else f"{median}{unit} [{low}–{high}{unit}]"

    text = TEMPLATE.replace("{seeds}", str(len(seeds))).replace("{last_seed}", str(seeds[-1]))
    text = text.replace("{cpu}", results.get("cpu", "?"))
    seconds: dict[str, list[float]] = {}
    for run in results["runs"]:
        seconds.setdefault(Path(run["page"]).stem, []).append(run["seconds"])
    medians = {page: statistics.median(v) for page, v in seconds.items()}
    slow = sorted((p for p in medians if medians[p] >= 20), key=lambda p: -medians[p])
    rest = [p for p in medians if p not in slow]
    times = [f"`{p}` {medians[p]:.0f} s" for p in slow]
    times.append(f"the other {len(rest)} pages {min(medians[p] for p in rest):.0f}–"
                 f"{max(medians[p] for p in rest):.0f} s each")
    text = text.replace("{page_times}", ", ".join(times))
    text = text.replace("{total_time}", f"{sum(medians.values()) / 60:.1f} min")
    return re.sub(r"\{([^{}|]+)\|([^{}]+)\}", one, text)


def render_setup(times: dict) -> str:
    """How long each README command took on a fresh clone and what it keeps on disk, from the run
    ``benchmarks/setup_times.py`` recorded."""
    if "ci_s" in times:
        return render_budgets(times)
    tests = times["tests"] if isinstance(times["tests"], str) else f"{times['tests']} tests"
    text = (f"Measured on a fresh clone of commit {times['commit']} with no `.venv` and no cache "
            f"({times['machine']}, {times['date']}, {times['command']}): `make book` took {times['make_book_s'] / 60:.1f} min in all (`.venv` and the toy "
            f"included), of which executing the pages took {times['execute_s'] / 60:.1f} min (two kernels); "
            f"`make test` then took "
            f"{times['make_test_s'] / 60:.1f} min ({tests}); a second `make book` without changes "
            f"took {times['rebuild_s']:.0f} s.")
    if "venv_mb" in times:
        text += (f" Building the toy took {times['toy_build_s']:.0f} s of the first `make book`; `make test-fast` "
                 f"({times['fast_tests']} tests, `.venv` already there, its quick toy built first) took "
                 f"{times['make_test_fast_s']:.0f} s. On disk: `.venv` {times['venv_mb'] / 1024:.1f} GiB (torch "
                 f"{times['torch_mb'] / 1024:.2f} GiB of it, from a {times['torch_wheel_mb']:.0f} MiB wheel), the "
                 f"site {times['site_mb']:.0f} MiB, the model cache {times['cache_mb']:.0f} MiB.")
    return text + "\n"


def render_budgets(times: dict) -> str:
    """The fresh-clone run in CI's order, every measure beside its budget (README,
    "Contributing"), and the slowest pages of the cold ``make book``."""
    budgets = times["budgets_s"]

    def against(key: str, unit: str = "min") -> str:
        value, budget = times[key], budgets[key]
        scale, fmt = (60, ".1f") if unit == "min" else (1, ".0f")
        mark = "within" if value <= budget else "**over**"
        return (f"{value / scale:{fmt}} {unit} (budget {budget / scale:g} {unit}, "
                f"{mark})")

    pages = sorted(times["pages_s"].items(), key=lambda kv: -kv[1])
    slow = ", ".join(f"`{Path(p).stem}` {s:.0f} s" for p, s in pages[:5])
    rest = [s for _, s in pages[5:]]
    text = (f"Measured on a fresh clone of commit {times['commit']} with no `.venv` and no "
            f"cache ({times['machine']}, {times['date']}, {times['command']}). Set-up "
            f"(`.venv`, MathJax) took {times['setup_s'] / 60:.1f} min; then `make "
            f"test-fast` {times['make_test_fast_s']:.0f} s ({times['fast_tests']} tests); "
            f"the cold `make book` {against('make_book_s')}, of which the toy took "
            f"{times['toy_build_s']:.0f} s and executing the pages "
            f"{times['execute_s'] / 60:.1f} min with two kernels; `make test` "
            f"{against('make_test_s')} ({times['tests']} tests); CI in all "
            f"{against('ci_s')}; a second `make book` without changes "
            f"{against('rebuild_s', 's')}. Slowest pages (one thread each, two at a "
            f"time): {slow}; the other {len(rest)} {min(rest):.0f}–{max(rest):.0f} s each; "
            f"slowest page budget {budgets['slowest_page_s']:.0f} s "
            f"({'within' if times['slowest_page_s'] <= budgets['slowest_page_s'] else '**over**'})."
            f" On disk: `.venv` {times['venv_mb'] / 1024:.1f} GiB (torch "
            f"{times['torch_mb'] / 1024:.2f} GiB of it, from a {times['torch_wheel_mb']:.0f} "
            f"MiB wheel), the site {times['site_mb']:.0f} MiB, the model cache "
            f"{times['cache_mb']:.0f} MiB.")
    if times.get("note"):  # what went wrong in the measured run, and what changed since
        text += " " + times["note"]
    return text + "\n"


def render_vocab(record: dict) -> str:
    """Large vocabularies: chunked log-probs, full logits and TRL, from benchmarks/bench_vocab.py."""
    engines = ("dpo_ref, chunked log-probs", "dpo_ref, full logits", "TRL DPOTrainer")
    lines = [f"`python benchmarks/bench_vocab.py` ({record['machine']}, {record['threads']} threads, torch "
             f"{record['torch']}, trl {record['trl']}; random-init Llama of width 64 and 2 layers, "
             f"{record['pairs']} pairs of a few hundred response tokens, batch {record['batch']}, copy "
             f"reference, fp32, {record['steps']} steps timed after {record['warmup']}):", ""]
    lines += ["| vocabulary, max_length | chunked log-probs | full logits | TRL | log-prob step, chunked / full |",
              "|---|---|---|---|---|"]
    for vocab, case in record["cases"].items():
        cells = [f"{case[e]['pairs_per_s']:.3f} pairs/s, {case[e]['peak_rss_mb'] / 1024:.2f} GB" for e in engines]
        step = [case[f"logps step, {k}"]["logps_peak_mb"] for k in ("chunked", "full logits")]
        lines.append(f"| {int(vocab):,}, {case['max_length']} | " + " | ".join(cells)
                     + f" | {step[0]:,.0f} / {step[1]:,.0f} MB |")
    return "\n".join(lines) + "\n"


def render_real(record: dict) -> str:
    """The real model beside TRL (benchmarks/bench_dpo.py --only real)."""
    real = record["real"]
    runs = real["runs"]
    first = runs["copy"]["dpo_ref"]
    lines = [
        f"`python benchmarks/bench_dpo.py --only real` ({record['machine']}, {_threads(record['threads'])}, "
        f"torch {record['torch']}, transformers {record['transformers']}, trl {record['trl']}): "
        f"SmolLM2-135M-Instruct from the packaged GGUF, de-quantised to fp32 ({first['params'] / 1e6:.1f}M "
        f"parameters), {record['batch'] * (real['steps'] + real['warmup'])} plain-text pairs of "
        f"{first['prompt_tokens']:.0f} prompt and {first['response_tokens']:.0f} response tokens on average, "
        f"batch {record['batch']}, `max_length` {record['max_length']}, {real['steps']} steps timed after "
        f"{real['warmup']}, median of {record['repeats']}:", "",
        "| reference | dpo_ref pairs/s | TRL pairs/s | dpo_ref ÷ TRL | CPU MFU dpo_ref / TRL "
        "| peak RSS dpo_ref / TRL | dpo_ref's training memory: measured / estimated |",
        "|---|---|---|---|---|---|---|"]
    for label, m in runs.items():
        d, t = m["dpo_ref"], m.get("trl")
        ratio = f"{d['pairs_per_s'] / t['pairs_per_s']:.2f}" if t else "–"
        tp = f"{t['pairs_per_s']:.2f}" if t else "–"
        mfu = f"{d['mfu']:.1%} / {t['mfu']:.1%}" if t else f"{d['mfu']:.1%} / –"
        rss = (f"{d['peak_rss_mb'] / 1024:.2f} / {t['peak_rss_mb'] / 1024:.2f} GB" if t
               else f"{d['peak_rss_mb'] / 1024:.2f} GB / –")
        memory = f"{d['measured_mb'] / 1024:.2f} / {sum(d['estimate_mb'].values()) / 1024:.2f} GB"
        name = label if "full" in label else f"{label} (chunked log-probs)"
        lines.append(f"| {name} | {d['pairs_per_s']:.2f} | {tp} | {ratio} | {mfu} | {rss} | {memory} |")
    short = [(m["dpo_ref"]["measured_mb"] - sum(m["dpo_ref"]["estimate_mb"].values())) / 1024
             for m in runs.values()]
    lines += ["", wrap(
        f"CPU MFU: model FLOPs per second (6·N·T for the policy's forward and backward, 4·N·T with LoRA, "
        f"2·N·T for a reference forward; T the tokens a trainer runs for a pair: prompt and both responses "
        f"with `dpo_ref`'s prompt sharing, {first['tokens_run_per_pair']:.1f} on average, twice the prompt "
        f"and both responses in TRL's two rows, {runs['copy']['trl']['tokens_run_per_pair']:.0f}) over this "
        f"machine's fp32 matmul rate measured in the same run, {real['matmul_gflops']:.0f} GFLOP/s. Training "
        f"memory: peak RSS minus the RSS before the model was loaded, against "
        f"`dpo_ref.lab.memory.training_memory` for the model's shape with fp32 activations; the estimate falls "
        f"short by {min(short):.2f}–{max(short):.2f} GB here, most with LoRA, and where the rest goes was not "
        f"traced: read the estimate as a lower bound on the CPU.")]
    return "\n".join(lines) + "\n"


def _threads(n: int) -> str:
    return {1: "one thread", 2: "two threads"}.get(n, f"{n} threads")


def _slash(values, spec: str = ".1f") -> str:
    return " / ".join(format(v, spec) for v in values)


def render_speed(one: dict, two: dict, positions_ratio: float) -> str:
    """The "Speed" section: benchmarks/bench_dpo.py with one thread (cpu-1-thread.json) and two (cpu-2-threads.json).

    ``positions_ratio`` (positions per pair as 2B rows ÷ with prompt sharing) is glued by
    ``book/09_2_making_dpo_fast.md`` and recorded in robustness.json."""
    main, tech, scaling = one["main"], one["techniques"], one["scaling"]
    models = list(dict.fromkeys(key.split("/")[0] for key in main))
    modes = list(dict.fromkeys(key.split("/")[1] for key in main))
    wide = next(m for m in models if m != "toy")  # the random-init Llama: w<hidden>
    width = int(wide[1:])
    # dpo_ref's own positions count each prompt twice (2B rows); half of that is one prompt-and-response sequence.
    tokens = [engine["tokens_per_pair"] for case in main.values() for name, engine in case.items() if name == "dpo_ref"]
    assert len(set(tokens)) == 1, "every main case should train on the same pairs"
    rate = lambda r: r["pairs_per_s"]
    peak = lambda r: r["peak_rss_mb"]
    intro = (
        "`python benchmarks/bench_dpo.py` (needs `pip install -e \".[bench]\"` for TRL) trains the same model on the "
        f"same 200 pairs (prompts longer than responses, {tokens[0] / 2:.0f} tokens of prompt and response per sequence "
        f"on average; batch {one['batch']}, `max_length` {one['max_length']}, {one['precision']}, {one['steps']} timed "
        f"steps after {one['warmup']} warm-up steps, same thread count) with `dpo_ref`, with TRL's `DPOTrainer` and "
        "with a minimal hand-written loop (one concatenated forward over 2B rows, a frozen copy, AdamW), each in its "
        f"own process, engines interleaved, median of {one['repeats']} repeats, and writes "
        f"`benchmarks/results/*.json`. Measured here with `{one['command']}` ({one['machine']}, "
        f"{_threads(one['threads'])} per engine; torch {one['torch']}, transformers {one['transformers']}, trl "
        f"{one['trl']}). `toy` is the course's pretrained toy model, `{wide}` a random-init 6-layer Llama of width "
        f"{width} on the toy tokenizer. TRL turns gradient checkpointing on by default; in this table it is off, so "
        "all three do the same work:"
    )
    lines = [
        wrap(intro),
        "",
        "| model / reference | dpo_ref pairs/s | TRL pairs/s | minimal pairs/s | dpo_ref ÷ TRL | peak MB dpo_ref / TRL / minimal |",
        "|---|---|---|---|---|---|",
    ]
    for key, case in main.items():
        d, t, m = case["dpo_ref"], case["trl"], case["minimal"]
        lines.append(f"| {key.replace('/', ' / ')} | {rate(d):.1f} | {rate(t):.1f} | {rate(m):.1f} | "
                     f"{rate(d) / rate(t):.2f} | {peak(d):.0f} / {peak(t):.0f} / {peak(m):.0f} |")
    lines.append("")

    def checkpointing(record: dict) -> tuple[str, str, str]:
        cases = [record["checkpointing"][f"{wide}/{mode}"] for mode in modes]
        return (" / ".join(f"{rate(c['dpo_ref']) / rate(c['trl']):.2f}×" for c in cases),
                _slash([peak(c["dpo_ref"]) for c in cases], ".0f"), _slash([peak(c["trl"]) for c in cases], ".0f"))

    ratios, ours, theirs = checkpointing(one)
    rows, shared = tech["copy reference, 2B rows (no prompt sharing)"], tech["copy reference, prompt sharing (default)"]
    grouped, precomputed = tech["copy reference, prompt sharing + group_by_length"], tech["precomputed reference, prompt sharing"]
    lora, alone = tech["LoRA, reference = adapters off"], tech["LoRA, precomputed reference (policy alone)"]
    seqs = sorted((int(k.split()[1]), v) for k, v in scaling.items() if k.startswith("seq "))
    widths = sorted([(int(k.split()[1]), v) for k, v in scaling.items() if k.startswith("width ")]
                    + [(width, scaling[f"seq {one['max_length']}"])])
    points = [v for _, v in seqs + widths]
    memory = ("with less peak memory at every point" if all(peak(p["dpo_ref"]) < peak(p["trl"]) for p in points)
              else "peak MB dpo_ref / TRL " + ", ".join(f"{peak(p['dpo_ref']):.0f} / {peak(p['trl']):.0f}" for p in points))
    wall = one["wall"]
    prose = (
        f"With gradient checkpointing on in both (TRL's default), on {wide}: {ratios} TRL's rate "
        f"({' / '.join(modes)}) at {ours} MB against {theirs} MB. Most of the gain is work not done: `train` puts "
        "each pair in one row (prompt, chosen, rejected) with an attention mask that hides chosen from rejected, so the "
        f"prompt is computed once ({positions_ratio:.2f}× fewer positions per pair than as 2B rows on this data, as "
        f"`book/09_2_making_dpo_fast.md` counts them; on {wide}, {rate(shared):.1f} against {rate(rows):.1f} pairs/s with "
        "`prompt_sharing=False`), and runs the LM head on response columns only. "
        f"`group_by_length=True` gives {rate(grouped):.1f}; a precomputed reference {rate(precomputed):.1f}; a LoRA "
        f"reference holds no second copy (peak {peak(lora):.0f} MB against {peak(alone):.0f} MB for the LoRA policy "
        f"alone). As sequences double ({' → '.join(str(n) for n, _ in seqs)} tokens) dpo_ref does "
        f"{_slash([rate(v['dpo_ref']) for _, v in seqs])} pairs/s against TRL's {_slash([rate(v['trl']) for _, v in seqs])}, "
        f"and as width doubles ({' → '.join(str(n) for n, _ in widths)}) {_slash([rate(v['dpo_ref']) for _, v in widths])} "
        f"against {_slash([rate(v['trl']) for _, v in widths])}, {memory}. A whole 100-step identity run on the toy "
        f"model, from a cold interpreter, takes {wall['dpo_ref']:.1f} s with `python -m dpo_ref train` and "
        f"{wall['trl']:.1f} s with a TRL script (`benchmarks/trl_identity.py`): {wall['dpo_ref'] / wall['trl']:.2f}×. "
        "The book page `book/09_2_making_dpo_fast.md` explains each technique and renders these tables from the JSON."
    )
    lines += [wrap(prose), ""]

    main2, tech2, wall2 = two["main"], two["techniques"], two["wall"]
    parts = []
    for model in models:
        cells = []
        for i, mode in enumerate(modes):
            d, t, m = (main2[f"{model}/{mode}"][e] for e in ("dpo_ref", "trl", "minimal"))
            cell = f"{_slash([rate(d), rate(t), rate(m)])} ("
            if model == "toy":
                cell = (cell[:-2] + f" pairs/s (dpo_ref / TRL / minimal, {mode})" if i == 0 and model == models[0]
                        else cell + f"{mode})")
            else:
                cell += (f"{mode}, {rate(d) / rate(t):.2f}×{' TRL' if i == 0 else ''}, "
                         f"{_slash([peak(d), peak(t), peak(m)], '.0f')} MB)")
            cells.append(cell)
        parts.append(f"{model} " + ", ".join(cells))
    ratios2, ours2, theirs2 = checkpointing(two)
    lora2, alone2 = tech2["LoRA, reference = adapters off"], tech2["LoRA, precomputed reference (policy alone)"]
    prose2 = (
        f"The same benchmark with {_threads(two['threads'])} per engine on the idle machine (`{two['command']}`): "
        + "; ".join(parts) + f"; with gradient checkpointing on in both, {ratios2} TRL at {ours2} MB against {theirs2} MB. "
        f"Techniques on {wide}: 2B rows {rate(tech2['copy reference, 2B rows (no prompt sharing)']):.1f}, prompt sharing "
        f"{rate(tech2['copy reference, prompt sharing (default)']):.1f}, + group_by_length "
        f"{rate(tech2['copy reference, prompt sharing + group_by_length']):.1f}, precomputed "
        f"{rate(tech2['precomputed reference, prompt sharing']):.1f} pairs/s; LoRA reference {peak(lora2):.0f} MB against "
        f"{peak(alone2):.0f} MB for the LoRA policy alone ({100 * (peak(lora2) / peak(alone2) - 1):+.1f} %). Identity run, "
        f"whole process: {wall2['dpo_ref']:.1f} s against {wall2['trl']:.1f} s ({wall2['dpo_ref'] / wall2['trl']:.2f}×)."
    )
    return "\n".join(lines) + "\n" + wrap(prose2) + "\n"


def wrap(paragraph: str, width: int = 115) -> str:
    """Wrap a generated paragraph like the README's prose, never starting a line with what Markdown would read as
    a list item, heading, quote or table row."""
    lines = textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False)
    risky = re.compile(r"([-+*>#|]|\d+[.)])(\s|$)")
    out: list[str] = []
    for line in lines:
        while out and risky.match(line):  # move the risky first word up onto the line before
            word, _, line = line.partition(" ")
            out[-1] += " " + word
            if not line:
                break
        if line:
            out.append(line)
    return "\n".join(out)


def _sci(value: float) -> str:
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def render_gpu(records: dict) -> str:
    """The paragraph on a GPU, from benchmarks/gpu_check.py's cases as stored in gpu-h200.json (a description, the
    machine, the correctness cases and the speed cases)."""
    machine = records["machine"]
    for record in records["correctness"] + records["speed"]:
        if "error" in record:
            raise ValueError(f"gpu record {record['case']!r} failed: {record['error']}")
    steps = re.search(r"--steps (\d+)", records["description"])
    repeats = {len(r["each_repeat"]) for r in records["speed"]}
    assert steps and len(repeats) == 1, "gpu-h200.json should record --steps and one number of repeats"
    speed: dict[int, dict[str, dict]] = {}
    for r in records["speed"]:
        width, name = re.fullmatch(r"speed w(\d+): (.+)", r["case"]).groups()
        speed.setdefault(int(width), {})[name] = r
    slowest_first = max(r["pairs_per_s"] / r["each_repeat"][0] for r in records["speed"])
    gb = lambda r: r["peak_cuda_mb"] / 1024
    widths = []
    for i, (width, s) in enumerate(sorted(speed.items())):
        rows, shared = s["copy, no prompt sharing"], s["copy, prompt sharing"]
        grouped, pre = s["copy, prompt sharing + group_by_length"], s["precomputed reference"]
        gain = shared["pairs_per_s"] / rows["pairs_per_s"]
        if i == 0:
            widths.append(f"width {width}: {rows['pairs_per_s']:.0f} pairs/s with 2B rows, {shared['pairs_per_s']:.0f} "
                          f"with prompt sharing ({gain:.2f}×, peak {gb(shared):.1f} against {gb(rows):.1f} GB), "
                          f"{grouped['pairs_per_s']:.0f} with `group_by_length`, {pre['pairs_per_s']:.0f} with a "
                          "precomputed reference")
        else:
            widths.append(f"width {width}: {rows['pairs_per_s']:.0f} → {shared['pairs_per_s']:.0f} ({gain:.2f}×, "
                          f"{gb(shared):.1f} against {gb(rows):.1f} GB) → {grouped['pairs_per_s']:.0f}, precomputed "
                          f"{pre['pairs_per_s']:.0f}")
    runs = [r for r in records["correctness"] if "settings" in r]
    # A precomputed run's held-out accuracy was read against the training pairs' reference
    # table (fixed since, tests/test_reference.py): not a measurement, so not shown.
    measured = [r for r in runs if r["settings"].get("reference") != "precomputed"]
    athene, accuracy = [r["athene_rate"] for r in runs], [r["eval_accuracy"] for r in measured]
    each = "each ends with" if len(set(athene)) == len(set(accuracy)) == 1 else "each ends with at least"
    gap = next(r for r in records["correctness"] if "max_abs_gap" in r)
    return wrap(
        f"On a GPU (one {machine['gpu']}, torch {machine['torch']}, transformers {machine['transformers']}, lent for "
        "this check; TRL was not installed there, so `dpo_ref`'s settings only): `python benchmarks/gpu_check.py` "
        "(results in `benchmarks/results/gpu-h200.json`, rendered on the book's page on speed). Random-init 6-layer "
        "Llamas on the toy tokenizer, 512 pairs with prompts longer than responses, batch 16, `max_length` 512, bf16, "
        f"{steps.group(1)} timed steps, median of {repeats.pop()} interleaved turns (the first turn over new sequence "
        f"lengths runs up to {slowest_first:.1f}× slower): " + "; ".join(widths) + ". Its correctness part trains the "
        f"toy identity change on the GPU in {len(runs)} settings (" + "; ".join(r["case"] for r in runs) + f"): {each} "
        f"{100 * min(athene):.0f} % of held-out answers naming Athene and held-out reward accuracy {min(accuracy):.1f} "
        f"(in the {len(runs) - len(measured)} with a precomputed reference the accuracy was read against the training "
        "pairs' reference log-probs, a bug fixed since: not shown); "
        f"fp32 on the GPU logs the CPU run's losses to {_sci(gap['max_abs_gap'])}. MFU on a real-size model is not "
        "measured."
    ) + "\n"


def render_all(readme: str) -> str:
    """README.md with every generated section rewritten from its results file."""
    robustness = json.loads(RESULTS.read_text())
    new = replace_between(readme, BEGIN, END, render(robustness))
    new = replace_between(new, SETUP_BEGIN, SETUP_END, render_setup(json.loads(SETUP_TIMES.read_text())))
    new = replace_between(new, VOCAB_BEGIN, VOCAB_END, render_vocab(json.loads(VOCAB.read_text())))
    positions_ratio = statistics.median(glued_values(robustness)["positions_ratio"])
    new = replace_between(new, SPEED_BEGIN, SPEED_END, render_speed(json.loads(CPU_1.read_text()),
                                                                    json.loads(CPU_2.read_text()), positions_ratio))
    new = replace_between(new, REAL_BEGIN, REAL_END, render_real(json.loads(REAL.read_text())))
    return replace_between(new, GPU_BEGIN, GPU_END, render_gpu(json.loads(GPU.read_text())))


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}{end}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text()
    new = render_all(readme)
    if args.check:
        if new != readme:
            print("a generated section of README.md differs from benchmarks/results/*.json: "
                  "run python scripts/readme_results.py", file=sys.stderr)
            return 1
        return 0
    (ROOT / "README.md").write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
