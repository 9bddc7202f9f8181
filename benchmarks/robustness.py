"""The seed sweep: every page's claims measured on several independently built toys and runs.

A claim the course makes must hold on another machine, and floating-point results differ between
processors; seeds are the perturbation that moves a tiny model most. For each seed s this builds the
toy with seed s (``DPO_TOY_SEED``), runs every page in full (``DPO_FAST=0``) with run seed s
(``DPO_SEED``), and collects the claims each page checks through ``dpo_ref.lab.findings``. It writes,
per claim, the value in every seed, the worst and the median, and the threshold the page uses::

    python benchmarks/robustness.py --seeds 0 1 2 3 4 --jobs 2
    python benchmarks/robustness.py notebooks/06_2_sigma_ablation.ipynb --seeds 0 1 2 3 4   # one page
    python benchmarks/robustness.py --report        # print the table of the results file

Runs of pages already in the results file are replaced, others kept, so a page can be re-swept alone.
About an hour for the whole course with 5 seeds on 2 cores (two pages at a time, one thread each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from execute_pages import ROOT, execute, slow_first, toc_pages  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "robustness.json"


def build_toys(seeds: list[int]) -> None:
    """Build the missing toys one after another (each build uses a fixed two threads)."""
    for seed in seeds:
        subprocess.run([sys.executable, "-m", "dpo_ref", "toy", "--seed", str(seed)], check=True)


def run_page(page: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {"DPO_FAST": "0", "DPO_SEED": str(seed), "DPO_TOY_SEED": str(seed), "DPO_FINDINGS_DIR": out,
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        result = execute(page, env)
        claims = [c for f in Path(out).glob("*.json") for c in json.loads(f.read_text())["claims"]]
        glued_file = Path(out) / "glued.jsonl"  # every number the page's prose quotes (dpo_ref.lab.findings.glue)
        lines = glued_file.read_text().splitlines() if glued_file.exists() else []
        glued = {g["name"]: g["value"] for g in map(json.loads, lines)}
    # the processor of each run: floating-point results, and so the toys, differ by processor
    return {**result, "seed": seed, "cpu": _cpu_model(), "claims": claims, "glued": glued}


def worst(values: list[float], op: str) -> float:
    return min(values) if op in (">", ">=") else max(values)


def summarise(runs: list[dict]) -> dict:
    """Per page: seeds run, failures; per claim: values by seed, worst, median, threshold, holds."""
    pages: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: (r["page"], r["seed"])):
        page = pages.setdefault(run["page"], {"seeds": [], "errors": {}, "seconds": [], "claims": {}})
        page["seeds"].append(run["seed"])
        page["seconds"].append(run["seconds"])
        if not run["ok"]:
            page["errors"][str(run["seed"])] = run["error"]
        for c in run["claims"]:
            claim = page["claims"].setdefault(c["claim"], {"op": c["op"], "threshold": c["threshold"],
                                                           "asserted": c.get("asserted", True), "values": {}})
            claim["values"][str(run["seed"])] = c["value"]
    for page in pages.values():
        for claim in page["claims"].values():
            values = list(claim["values"].values())
            from dpo_ref.lab.findings import OPERATORS

            held = [OPERATORS[claim["op"]](v, claim["threshold"]) for v in values]
            claim.update(worst=worst(values, claim["op"]), median=statistics.median(values),
                         holds=f"{sum(held)}/{len(held)}")
    return pages


def report(pages: dict) -> str:
    lines = ["| page | claim | threshold | worst | median | holds |", "|---|---|---|---|---|---|"]
    for name, page in pages.items():
        for claim, c in page["claims"].items():
            kind = "" if c["asserted"] else " (reported, not asserted)"
            lines.append(f"| {Path(name).stem} | {claim}{kind} | {c['op']} {c['threshold']:g} | {c['worst']:.3g} | "
                         f"{c['median']:.3g} | {c['holds']} |")
        for seed, error in page["errors"].items():
            lines.append(f"| {Path(name).stem} | **seed {seed} failed**: {error[:120]} | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help="pages to sweep (default: every page of _toc.yml with code)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--report", action="store_true", help="only print the table of --output")
    args = parser.parse_args()
    output = Path(args.output)
    old = json.loads(output.read_text()) if output.exists() else {"runs": []}
    if args.report:
        print(report(summarise(old["runs"])))
        return
    pages = [str(p) for p in slow_first([Path(p).resolve() for p in args.pages] or toc_pages())]
    start = time.perf_counter()
    build_toys(args.seeds)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_page, page, seed) for seed in args.seeds for page in pages]
        new = []
        for f in futures:
            new.append(f.result())
            r = new[-1]
            print(f"{r['page']} seed {r['seed']}: {r['seconds']:.0f} s, {'ok' if r['ok'] else r['error']}",
                  flush=True)
            record = save(output, old["runs"], new)  # after every page: an interrupted sweep keeps its runs
    print(report(record["summary"]))
    print(f"{len(new)} page runs in {time.perf_counter() - start:.0f} s → {output}")


def save(output: Path, old_runs: list[dict], new: list[dict]) -> dict:
    import platform

    import torch

    done = {(r["page"], r["seed"]) for r in new}
    runs = [r for r in old_runs if (r["page"], r["seed"]) not in done] + new
    record = {"machine": platform.machine(), "cpu": processors(runs), "torch": torch.__version__,
              "runs": runs, "summary": summarise(runs)}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return record


def processors(runs: list[dict]) -> str:
    """The processors the runs were measured on, with how many page runs each."""
    from collections import Counter

    counts = Counter(r.get("cpu", "unrecorded") for r in runs)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{cpu} ({n} page runs)" for cpu, n in counts.most_common())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor()


if __name__ == "__main__":
    main()
