"""Time the README's set-up commands on a fresh clone, and measure what they keep on disk.

    python benchmarks/setup_times.py [--output benchmarks/results/setup-times.json] [--keep DIR]

Clones this repository's HEAD (committed files only) into an empty folder and runs there, with an
empty model cache (``DPO_REF_CACHE``): ``make book`` (``.venv``, the toy, every page, the site), then
``make test``, then ``make book`` again without changes, then ``make test-fast``. It records each
command's wall time, the toy's build time and the pages' execution time (as the commands print
them), the number of tests, and the disk taken by ``.venv`` (and torch in it), the site and the cache,
plus the size of the CPU torch wheel that set-up downloads. ``scripts/readme_results.py`` writes the
README's set-up sentences from the file. Takes as long as the commands (about an hour on 2 cores);
run it on an otherwise idle machine.
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


def run(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, str]:
    """Run ``command``; its wall time and output (also appended to ``log``). Fails if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    with log.open("a") as f:
        f.write(f"$ {' '.join(command)}  ({seconds:.0f} s, exit {result.returncode})\n")
        f.write(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}); see {log}")
    return seconds, result.stdout + result.stderr


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if not match:
        raise SystemExit(f"expected {pattern!r} in the output")
    return float(match.group(1))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def torch_wheel_mb(python: Path, folder: Path) -> float:
    """The CPU wheel set-up installs, downloaded as scripts/setup.sh asks for it."""
    cpu = ["--timeout", "15", "--retries", "0", "--index-url", "https://download.pytorch.org/whl/cpu"]
    pip = [str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder)]
    if subprocess.run(pip + cpu + ["torch==2.13.0"]).returncode:
        subprocess.run(pip + ["torch==2.13.0"], check=True)
    return sum(f.stat().st_size for f in folder.glob("torch-*.whl")) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "setup-times.json")
    parser.add_argument("--keep", type=Path, help="clone into this (new) folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="setup-times-"))
    clone, cache, log = work / "clone", work / "cache", work / "setup.log"
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPO_", "VIRTUAL_ENV"))}
    env["DPO_REF_CACHE"] = str(cache)
    book_s, book_out = run(["make", "book"], clone, env, log)
    test_s, test_out = run(["make", "test"], clone, env, log)
    rebuild_s, _ = run(["make", "book"], clone, env, log)
    fast_s, fast_out = run(["make", "test-fast"], clone, env, log)
    venv = clone / ".venv"
    torch_dir = next(venv.glob("lib/python*/site-packages/torch"))
    record = {
        "machine": f"{os.cpu_count()}-core {cpu_name()}",
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "command": "git clone; make book; make test; make book again; make test-fast (benchmarks/setup_times.py)",
        "make_book_s": round(book_s),
        "toy_build_s": number(r"toy model \([^)]*\) built in (\d+) s", book_out),
        "execute_s": number(r"executed \d+ pages in (\d+) s", book_out),
        "make_test_s": round(test_s),
        "tests": int(number(r"(\d+) passed", test_out)),
        "rebuild_s": round(rebuild_s, 1),
        "make_test_fast_s": round(fast_s),
        "fast_tests": int(number(r"(\d+) passed", fast_out)),
        "venv_mb": round(disk_mb(venv)),
        "torch_mb": round(disk_mb(torch_dir)),
        "torch_wheel_mb": round(torch_wheel_mb(venv / "bin" / "python", work / "wheel")),
        "site_mb": round(disk_mb(clone / "_build" / "html")),
        "cache_mb": round(disk_mb(cache)),
    }
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
