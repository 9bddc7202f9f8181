"""Write the README's "Measured" section from the seed sweep's results, never by hand.

Every number in that section is a value a page glues (``dpo_ref.findings.glue``), as recorded on every seed by
``benchmarks/robustness.py`` in ``benchmarks/results/robustness.json``. The section shows each one as
its median over the seeds with the lowest and highest value, so a reader sees the spread.

    python scripts/readme_results.py          # rewrite the section between the markers
    python scripts/readme_results.py --check  # exit 1 if README.md differs (tests/test_readme.py)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "robustness.json"
SETUP_TIMES = ROOT / "benchmarks" / "results" / "setup-times.json"  # .ci/run on a fresh clone, by hand
BEGIN, END = "<!-- measured:begin (scripts/readme_results.py) -->", "<!-- measured:end -->"
SETUP_BEGIN, SETUP_END = "<!-- setup-times:begin (scripts/readme_results.py) -->", "<!-- setup-times:end -->"
VOCAB = ROOT / "benchmarks" / "results" / "vocab.json"  # python benchmarks/bench_vocab.py
VOCAB_BEGIN, VOCAB_END = "<!-- vocab:begin (scripts/readme_results.py) -->", "<!-- vocab:end -->"

# {name|format}: a glued value; formats: pct (a share, shown in %), count, or a float format such as .2f.
TEMPLATE = """\
Each number below is the median over {seeds} seeds (toy build *and* run seeded alike:
`DPO_TOY_SEED = DPO_SEED = 0 … {last_seed}`) with the lowest and highest value in brackets, from
`benchmarks/results/robustness.json` (`python benchmarks/robustness.py`, {cpu}); the book shows seed 0.
Every claim the pages assert, with its worst case over the seeds and its threshold, is tabled in
`book/09_4_findings_over_seeds.md`.

On the offline toy model (0.85M parameters), DPO on {identity_n_pairs|count} correction-method pairs (β 0.1,
lr 1e-4, 100 steps of 8 pairs, frozen-copy reference) moved the greedy answers to 40 held-out identity
paraphrases from naming Llama in {identity_old_before|pct} to naming Athene in {identity_new_after|pct};
held-out reward accuracy ended at {identity_acc_after|pct}, and {identity_unchanged|pct} of 20 unrelated
answers stayed word for word the same (KL to the reference along the reference's greedy answers:
{identity_kl_other|.3f} nats per answer; `notebooks/identity.ipynb`). Without the σ weight
(`loss_type="unweighted"`, 300 steps), the same pairs reach a margin of {ablation_unweighted_margin|.1f}
against {ablation_sigmoid_margin|.1f} with it, and KL on unrelated answers of
{ablation_unweighted_KL_on_unrelated|.2f} nats against {ablation_sigmoid_KL_on_unrelated|.2f}
(`notebooks/sigma_ablation.ipynb`). At β = 1, held-out reward accuracy is
{beta_1.0_held-out_reward_accuracy|pct} but only {beta_1.0_names_Athene|pct} of the held-out answers name
Athene; at β = 0.1, {beta_0.1_names_Athene|pct} (`notebooks/beta_sweep.ipynb`).

The studies use a task with a ground-truth reward (two questions per prompt; a fixed scorer counts animal
words, {frontier_start_reward|.2f} per answer before training). Reward and sequence-level KL to the reference
(on samples from the policy) after 150 steps on {frontier_n_pairs|count} pairs: DPO β 0.1 reaches
{frontier_DPO_0.1_reward|.2f} at {frontier_DPO_0.1_KL|.1f} nats, β 2 {frontier_DPO_2.0_reward|.2f} at
{frontier_DPO_2.0_KL|.1f}; `unweighted` {frontier_unweighted_0.1_reward|.2f} at
{frontier_unweighted_0.1_KL|.1f}; best-of-128 with the true scorer {frontier_bon128_reward|.2f} at
{frontier_bon128_KL|.2f} nats (`reward_kl_frontier.ipynb`). On one budget of prompts, samples and steps,
offline pairs reach {op_offline_reward|.2f} at {op_offline_kl|.1f} nats, on-policy rounds with a fixed
reference {op_fixed_reward|.2f} at {op_fixed_kl|.1f}, and with a stepwise (sDPO) reference
{op_stepwise_reward|.2f} at {op_stepwise_kl|.1f} (`on_policy_iterative.ipynb`). A sign-off on every chosen
answer appears in {so_marked_marker|pct} of sampled answers to unrelated questions, and on held-out pairs
whose better answer lacks it the model prefers the better answer in only {so_marked_conflict|pct}; with the
sign-off on both sides of each pair, {so_balanced_marker|pct} and {so_balanced_conflict|pct}
(`shortcut_overfitting.ipynb`).

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
    """One sentence on how long each README command took on a fresh clone, from the recorded run."""
    return (f"Measured on a fresh clone with no `.venv` and no cache ({times['machine']}, {times['date']}, "
            f"`bash .ci/run`): `make book` took {times['make_book_s'] / 60:.1f} min in all (`.venv` and the toy "
            f"included), of which executing the pages took {times['execute_s'] / 60:.1f} min (two kernels); "
            f"`make test` then took "
            f"{times['make_test_s'] / 60:.1f} min ({times['tests']}); a second `make book` without changes "
            f"took {times['rebuild_s']:.0f} s.\n")


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


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}{end}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text()
    new = replace_between(readme, BEGIN, END, render(json.loads(RESULTS.read_text())))
    new = replace_between(new, SETUP_BEGIN, SETUP_END, render_setup(json.loads(SETUP_TIMES.read_text())))
    new = replace_between(new, VOCAB_BEGIN, VOCAB_END, render_vocab(json.loads(VOCAB.read_text())))
    if args.check:
        if new != readme:
            print("README.md's measured section differs from benchmarks/results/robustness.json: "
                  "run python scripts/readme_results.py", file=sys.stderr)
            return 1
        return 0
    (ROOT / "README.md").write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
