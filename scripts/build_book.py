"""Build the course site, executing the pages two at a time first.

jupyter-book v1 executes pages one after another. The toy model is so small that a second thread
barely helps one kernel, while two single-threaded kernels on 2 cores finish the course in about
half the time. So this script first fills jupyter-book's own execution cache
(``<output>/_build/.jupyter_cache``, keyed on each page's code cells) with ``--jobs`` kernels of one
thread each, longest pages first, and then runs ``jupyter-book build``, which takes every page from
the cache. Pages whose code is unchanged are not executed again, so a rebuild takes seconds. A page
that fails here is left out of the cache: the build executes it again and reports its traceback.

    python scripts/build_book.py                    # what `make book` runs
    python scripts/build_book.py --path-output DIR  # build into DIR/_build/html (the tests do)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_pages import ROOT, execute, read_page, slow_first, toc_pages  # noqa: E402


def is_cached(cache, path: Path) -> bool:
    try:
        cache.match_cache_notebook(read_page(path))
        return True
    except KeyError:
        return False


def with_outputs(page: Path, executed_json: str):
    """The page as jupyter-book reads it, with the executed cells' outputs.

    The cache keys on the code cells *and their metadata*; execution adds timing metadata to every
    cell, so the executed copy itself would never match the page the build reads.
    """
    import nbformat

    executed, nb = nbformat.reads(executed_json, as_version=4), read_page(page)
    for cell, done in zip(nb.cells, executed.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = done.outputs, done.execution_count
    nb.metadata["language_info"] = executed.metadata.get("language_info", {})
    return nb


def fill_cache(cache_path: Path, jobs: int, timeout: int) -> bool:
    """Execute every page that the cache lacks; True when all of them succeeded."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_path))
    pages = slow_first([p for p in toc_pages() if not is_cached(cache, p)])
    if not pages:
        print("every page is in the execution cache")
        return True
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start, ok = time.perf_counter(), True
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, str(p), env, timeout, True) for p in pages]
        for page, future in zip(pages, futures):
            r = future.result()
            print(f"{r['page']:40} {r['seconds']:6.1f} s  {'ok' if r['ok'] else 'FAILED: ' + r['error']}",
                  flush=True)
            if r["ok"]:
                cache.cache_notebook_bundle(
                    CacheBundleIn(with_outputs(page, r["notebook"]), str(page),
                                  data={"execution_seconds": r["seconds"]}),
                    check_validity=False, overwrite=True)
            ok &= r["ok"]
    print(f"executed {len(pages)} pages in {time.perf_counter() - start:.0f} s with {jobs} kernels")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path-output", default=str(ROOT))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell, as in _config.yml")
    args = parser.parse_args()
    start = time.perf_counter()
    from dpo_ref.toy import ensure_toy

    ensure_toy()  # once, before two kernels could both start building it
    fill_cache(Path(args.path_output) / "_build" / ".jupyter_cache", args.jobs, args.timeout)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", args.path_output,
                             "--warningiserror", "--nitpick", "--keep-going"])
    print(f"book built in {time.perf_counter() - start:.0f} s (exit status {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
