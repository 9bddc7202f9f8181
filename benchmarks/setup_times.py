"""Time the README's commands and CI on a fresh clone, against the course's budgets.

    python benchmarks/setup_times.py [--output benchmarks/results/setup-times.json]
                                     [--keep DIR]

Clones this repository's HEAD (committed files only) into an empty folder and runs
there, with an empty model cache (``DPO_REF_CACHE``), what CI runs, in CI's order:

1. the set-up both README commands start with (``.venv``, MathJax), timed on its own;
2. ``bash .ci/run``: ``make test-fast``, then ``make book`` (cold: the toy and every
   page at full length, ``.venv`` present), then ``make test``, each timed by the
   script;
3. ``make book`` again without changes (the rebuild).

It records each time, the toy's build time, every page's execution time and the slowest
(as ``make book`` prints them), the numbers of tests, and the disk taken by ``.venv``
(and torch in it), the site and the cache, plus the size of the CPU torch wheel that
set-up downloads; then prints every measure beside its budget (README, "Contributing").
CI on a fresh machine takes the set-up plus ``.ci/run``. ``scripts/readme_results.py``
writes the README's set-up sentences from the file. Takes as long as CI; run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# seconds; README "Contributing" states them
BUDGETS = {"make_book_s": 600, "rebuild_s": 30, "make_test_s": 900, "ci_s": 2400,
           "slowest_page_s": 240}
PAGE_LINE = re.compile(r"^(\S+\.(?:md|ipynb))\s+([\d.]+) s  ok", re.M)


def run(command: list[str], cwd: Path, env: dict[str, str],
        log: Path) -> tuple[float, str]:
    """Run ``command``; its wall time and output (also appended to ``log``). Fails if it
    fails."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    with log.open("a") as f:
        f.write(f"$ {' '.join(command)}  ({seconds:.0f} s, exit {result.returncode})\n")
        f.write(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}); "
                         f"see {log}")
    return seconds, result.stdout + result.stderr


def disk_mb(path: Path) -> float:
    files = (f for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return sum(f.stat().st_size for f in files) / 2**20


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if not match:
        raise SystemExit(f"expected {pattern!r} in the output")
    return float(match.group(1))


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def torch_wheel_mb(python: Path, folder: Path) -> float:
    """The CPU wheel set-up installs, downloaded as scripts/setup.sh asks for it."""
    cpu = ["--timeout", "15", "--retries", "0",
           "--index-url", "https://download.pytorch.org/whl/cpu"]
    pip = [str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder)]
    if subprocess.run(pip + cpu + ["torch==2.13.0"]).returncode:
        subprocess.run(pip + ["torch==2.13.0"], check=True)
    return sum(f.stat().st_size for f in folder.glob("torch-*.whl")) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "setup-times.json")
    parser.add_argument("--keep", type=Path,
                        help="clone into this (new) folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="setup-times-"))
    clone, cache, log = work / "clone", work / "cache", work / "setup.log"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DPO_", "VIRTUAL_ENV"))}
    env["DPO_REF_CACHE"] = str(cache)
    setup = ["make", ".venv/.ready", "_vendor/mathjax/tex-mml-chtml.js"]
    setup_s, _ = run(setup, clone, env, log)
    ci_s, ci_out = run(["bash", ".ci/run"], clone, env, log)
    rebuild_s, _ = run(["make", "book"], clone, env, log)
    # make book's own output follows the fast tier's time
    book_out = ci_out[ci_out.index("make test-fast:"):]
    pages = {p: float(s) for p, s in PAGE_LINE.findall(book_out)}
    slowest = max(pages, key=pages.get)
    venv = clone / ".venv"
    torch_dir = next(venv.glob("lib/python*/site-packages/torch"))
    record = {
        "machine": f"{os.cpu_count()}-core {cpu_name()}",
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "command": "git clone; set-up; bash .ci/run (make test-fast, make book, "
                   "make test); make book again (benchmarks/setup_times.py)",
        "setup_s": round(setup_s),
        "ci_s": round(setup_s + ci_s),
        "make_test_fast_s": number(r"make test-fast: (\d+) s", ci_out),
        "make_book_s": number(r"make book: (\d+) s", ci_out),
        "toy_build_s": number(r"toy model \([^)]*\) built in (\d+) s", book_out),
        "execute_s": number(r"executed \d+ pages in (\d+) s", book_out),
        "pages_s": pages,
        "slowest_page": slowest,
        "slowest_page_s": pages[slowest],
        "make_test_s": number(r"make test: (\d+) s", ci_out),
        "tests": int(number(r"(\d+) passed", ci_out[ci_out.index("make book:"):])),
        "fast_tests": int(number(r"(\d+) passed", ci_out)),
        "rebuild_s": round(rebuild_s, 1),
        "budgets_s": BUDGETS,
        "venv_mb": round(disk_mb(venv)),
        "torch_mb": round(disk_mb(torch_dir)),
        "torch_wheel_mb": round(torch_wheel_mb(venv / "bin" / "python",
                                               work / "wheel")),
        "site_mb": round(disk_mb(clone / "_build" / "html")),
        "cache_mb": round(disk_mb(cache)),
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    for key, budget in BUDGETS.items():
        verdict = "within" if record[key] <= budget else "OVER"
        print(f"{key:16} {record[key]:7.0f} s   budget {budget:5d} s   {verdict}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
