"""Execute the book's pages and notebooks outside the site build, several at a time, and time them.

Two uses share this module:

- ``benchmarks/robustness.py`` runs every page once per seed (``DPO_SEED``, ``DPO_TOY_SEED``) and
  collects the claims each page records through ``dpo_ref.lab.findings``;
- ``python benchmarks/execute_pages.py`` on its own executes every page of the table of contents once
  and prints the per-page times (``--jobs 2`` runs two pages at a time, one thread each).

Each page runs in its own kernel with ``OMP_NUM_THREADS`` set, so parallel jobs do not oversubscribe
the cores. MyST Markdown pages are read with myst-nb's own reader, as the book build reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def toc_pages() -> list[Path]:
    """The pages of ``_toc.yml`` that jupyter-book executes, in reading order: notebooks, and MyST pages
    with a kernel in their front matter (with or without code cells)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    pages = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            path = ROOT / f"{name}{suffix}"
            if path.exists() and (suffix == ".ipynb" or _has_kernel(path.read_text())):
                pages.append(path)
    return pages


# The slow pages, measured with this script; started first so that no core idles at the end.
# Longest first, except that the frontier study follows the family study: it reads the
# 8,192 samples that the family study draws and keeps (reward_task.best_and_worst).
SLOW_FIRST = ["10_2_family_study", "08_2_on_policy_iterative", "08_3_shortcut_overfitting", "08_1_reward_kl_frontier",
              "06_3_beta_sweep",
              "06_2_sigma_ablation", "07_1_data_curation", "07_2_beta_and_variants", "05_6_evaluation", "06_1_identity"]


def slow_first(pages: list[Path]) -> list[Path]:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    return sorted(pages, key=lambda p: rank.get(p.stem, len(rank)))


def _has_kernel(text: str) -> bool:
    return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]


def read_page(path: Path):
    import nbformat

    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text(), path=path)


# A cell that displays ipywidgets can leave nbclient waiting for a reply the kernel already
# sent, for about ten minutes (jupyter/nbclient#312, jupyter/nbconvert#1921; seen here once
# in 06_3_beta_sweep). Such a cell gets a short timeout, and its page one more try.
WIDGET_CELL_TIMEOUT = 120


def _is_widget_cell(cell) -> bool:
    return cell.cell_type == "code" and "ipywidgets" in cell.source


def _cell_timeout(cell, timeout: int) -> int:
    return min(timeout, WIDGET_CELL_TIMEOUT) if _is_widget_cell(cell) else timeout


def _ipc_kernel(folder: str):
    """Configuration for a kernel that talks over Unix sockets in ``folder``.

    Over TCP, jupyter_client picks free ports by binding and releasing them before the
    kernel binds them itself; two pages starting at once in two processes can pick the
    same port, and one kernel dies before replying to kernel_info (seen in CI). Sockets
    in a folder of its own cannot collide.
    """
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = os.path.join(folder, "socket")
    return config


def execute(path: str, env: dict[str, str], timeout: int = 1800, keep_notebook: bool = False,
            kernel_name: str = "python3") -> dict:
    """Run one page top to bottom in a fresh kernel; its status, wall time and per-cell times.

    With ``keep_notebook`` the executed notebook comes back too (as nbformat JSON, under "notebook").
    ``kernel_name``: another environment's kernel (``scripts/colab_check.py`` runs Colab's).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    os.environ.update(env)  # the kernel inherits this worker process's environment
    start, retried = time.perf_counter(), False
    for attempt in (1, 2):
        nb, error, running = read_page(Path(path)), None, []

        def cell_timeout(cell):  # called as each cell starts: remember which one runs
            running[:] = [cell]
            return _cell_timeout(cell, timeout)

        try:
            with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
                NotebookClient(nb, config=_ipc_kernel(sockets), kernel_name=kernel_name,
                               timeout=timeout, timeout_func=cell_timeout,
                               resources={"metadata": {"path": str(Path(path).parent)}}
                               ).execute()
        except CellExecutionError as exc:
            import re

            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
            error = " | ".join(line for line in text[-3:] if line.strip())[:1500]
        except CellTimeoutError as exc:  # not a CellExecutionError
            error = f"timed out: {exc}"[:1500]
            if attempt == 1 and running and _is_widget_cell(running[0]):
                retried = True
                continue
        break
    cells = []
    for i, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            from datetime import datetime

            t0 = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            t1 = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            cells.append((i, round((t1 - t0).total_seconds(), 2)))
    page = Path(path).relative_to(ROOT) if Path(path).is_relative_to(ROOT) else Path(path)
    result = {"page": str(page), "ok": error is None, "error": error,
              "seconds": round(time.perf_counter() - start, 1), "cells": cells,
              "retried": retried}
    if keep_notebook:
        import nbformat

        result["notebook"] = nbformat.writes(nb)
    return result


def execute_all(pages: list[Path], env: dict[str, str], jobs: int = 2, threads: int = 1,
                timeout: int = 1800, keep_notebook: bool = False, kernel_name: str = "python3") -> list[dict]:
    """Execute ``pages`` ``jobs`` at a time, in the order given, each kernel with ``threads`` threads."""
    env = {**env, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, str(p), env, timeout, keep_notebook, kernel_name) for p in pages]
        return [f.result() for f in futures]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help="pages to run (default: every page of _toc.yml with code)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fast", action="store_true", help="set DPO_FAST=1")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    pages = slow_first([Path(p).resolve() for p in args.pages] or toc_pages())
    start = time.perf_counter()
    results = execute_all(pages, {"DPO_FAST": "1" if args.fast else "0"}, args.jobs, args.threads)
    for r in results:
        slowest = sorted(r["cells"], key=lambda c: -c[1])[:3]
        print(f"{r['page']:40} {r['seconds']:7.1f} s  {'ok' if r['ok'] else 'FAILED: ' + r['error']}"
              f"  slowest cells {slowest}")
    print(f"{len(results)} pages in {time.perf_counter() - start:.0f} s with {args.jobs} jobs")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
