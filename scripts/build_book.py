"""Build the course site, executing the pages two at a time first.

jupyter-book v1 executes pages one after another. The toy model is so small that a
second thread barely helps one kernel, while two single-threaded kernels on 2 cores
finish the course in about half the time. So this script first fills jupyter-book's own
execution cache (``<output>/_build/.jupyter_cache``, keyed on each page's code cells)
with ``--jobs`` kernels of one thread each, longest pages first, and then runs
``jupyter-book build``, which takes every page from the cache. Pages whose code is
unchanged are not executed again, so a rebuild takes seconds. A page that fails here is
left out of the cache: the build executes it again (in the same mode) and reports its
traceback.

The cache keys on a page's code cells only, not on the ``dpo_ref`` they import nor on
``DPO_FAST``. So a stamp beside it (``_build/.jupyter_cache.stamp.json``) records the
mode (full or fast) and a hash of the package's source (every ``dpo_ref/**/*.py``, names
and contents) that filled it. When either differs, the whole cache is dropped, and with
it Sphinx's environment (``_build/.doctrees``), which holds the pages as read with the
old outputs and would keep them for every page whose source did not change. Every code
page imports ``dpo_ref``, so a change to it may change any page's outputs: dropping the
whole cache executes what a finer key would, and is simpler. A fast build never leaves
its shortened outputs to a later full build, nor the reverse; by default it also builds
into a folder of its own, ``_build/fast``, and so keeps the full build's cache.

``--outputs-from DIR`` (fast builds only) takes the notebooks' outputs from
``scripts/colab_check.py --keep DIR`` (its ``llama`` runs, also with ``DPO_FAST=1``)
instead of executing them again, so that ``make test`` runs each notebook once on the
toy, not once for the site and once as on Colab. A copy goes into the cache as a page
executed here does; one stamped with another ``dpo_ref`` or mode, or whose code differs
from the notebook's, is executed here instead. A full build has no such source: its
outputs come from its own run.

    python scripts/build_book.py                    # what `make book` runs
    python scripts/build_book.py --fast             # DPO_FAST=1, shortened runs
    python scripts/build_book.py --path-output DIR  # build into DIR/_build/html
    python scripts/build_book.py --fast --outputs-from DIR  # what the tests run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_pages import ROOT, execute, read_page, slow_first, toc_pages  # noqa: E402

from dpo_ref.files import source_hash  # noqa: E402

PACKAGE = ROOT / "dpo_ref"
STAMP = ".jupyter_cache.stamp.json"  # in <output>/_build, beside .jupyter_cache


def package_hash(package: Path = PACKAGE) -> str:
    """A hash of every ``*.py`` in the package, sorted: names and contents."""
    return source_hash(package)


def build_stamp(fast: bool, package: Path = PACKAGE) -> dict:
    return {"mode": "fast" if fast else "full", "dpo_ref": package_hash(package)}


def check_stamp(build_dir: Path, stamp: dict) -> str | None:
    """Keep ``build_dir``'s execution cache if ``stamp`` filled it; else drop it.

    Returns why the pages are executed again (None when the cache is kept) and records
    ``stamp`` for the outputs executed from now on. Sphinx's environment goes with the
    cache: it would keep the old outputs of every page whose source is unchanged.
    """
    cache, path = build_dir / ".jupyter_cache", build_dir / STAMP
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if not cache.exists():
        reason = f"no execution cache in {build_dir}: every page is executed"
    elif old == stamp:
        return None
    elif not isinstance(old, dict):
        reason = "execution cache dropped (no stamp): every page is executed again"
    else:
        changes = []
        if old.get("mode") != stamp["mode"]:
            changes.append(f"it holds {old.get('mode')} outputs, this is a "
                           f"{stamp['mode']} build")
        if old.get("dpo_ref") != stamp["dpo_ref"]:
            changes.append(f"dpo_ref changed since it was filled, "
                           f"{str(old.get('dpo_ref'))[:8]} → {stamp['dpo_ref'][:8]}")
        reason = (f"execution cache dropped ({'; '.join(changes) or 'stamp differs'}): "
                  "every page is executed again")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(build_dir / ".doctrees", ignore_errors=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp) + "\n")
    return reason


def is_cached(cache, path: Path) -> bool:
    try:
        cache.match_cache_notebook(read_page(path))
        return True
    except KeyError:
        return False


def with_outputs(page: Path, executed_json: str):
    """The page as jupyter-book reads it, with the executed cells' outputs.

    The cache keys on the code cells *and their metadata*; execution adds timing
    metadata to every cell, so the executed copy itself would never match the page the
    build reads.
    """
    import nbformat

    executed, nb = nbformat.reads(executed_json, as_version=4), read_page(page)
    for cell, done in zip(nb.cells, executed.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = done.outputs, done.execution_count
    nb.metadata["language_info"] = executed.metadata.get("language_info", {})
    return nb


def code_of(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def store(cache, page: Path, executed_json: str, seconds: float | None) -> None:
    """Cache ``page`` with the outputs of its executed copy (``with_outputs``)."""
    from jupyter_cache.base import CacheBundleIn

    cache.cache_notebook_bundle(
        CacheBundleIn(with_outputs(page, executed_json), str(page),
                      data={"execution_seconds": seconds}),
        check_validity=False, overwrite=True)


def take_outputs(cache_path: Path, folder: Path, stamp: dict) -> list[Path]:
    """Cache the toc's notebooks from executed copies in ``folder``; the pages taken.

    The copies are ``colab_check.py --keep``'s: each stamped as this build's cache is
    (``stamp``), so outputs of another ``dpo_ref`` or mode are refused, as the cache
    would be. A copy whose code differs from the notebook (an older run) is refused too:
    its outputs belong to other code. A refused or missing copy is executed as usual.
    """
    import nbformat
    from jupyter_cache import get_cache

    cache, taken = get_cache(str(cache_path)), []
    for page in toc_pages():
        copy = folder / f"{page.stem}.ipynb"
        if page.suffix != ".ipynb" or not copy.exists():
            continue
        text = copy.read_text()
        executed = nbformat.reads(text, as_version=4)
        made = dict(executed.metadata.get("colab_check", {}))
        seconds = made.pop("seconds", None)
        if made != stamp:
            print(f"{copy}: not taken, its stamp {made} is not this build's {stamp}")
        elif code_of(executed) != code_of(read_page(page)):
            print(f"{copy}: not taken, its code differs from {page.name}'s")
        else:
            store(cache, page, text, seconds)
            taken.append(page)
    return taken


def fill_cache(cache_path: Path, jobs: int, timeout: int, fast: bool = False) -> bool:
    """Execute every page that the cache lacks; True when all of them succeeded."""
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_path))
    pages = slow_first([p for p in toc_pages() if not is_cached(cache, p)])
    if not pages:
        print("every page is in the execution cache")
        return True
    # DPO_FAST set either way: an exported DPO_FAST=1 must not leak into a full build.
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "DPO_FAST": "1" if fast else "0"}
    start, ok = time.perf_counter(), True
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, str(p), env, timeout, True) for p in pages]
        for page, future in zip(pages, futures):
            r = future.result()
            status = "ok" if r["ok"] else "FAILED: " + r["error"]
            print(f"{r['page']:40} {r['seconds']:6.1f} s  {status}", flush=True)
            if r["ok"]:
                store(cache, page, r["notebook"], r["seconds"])
            ok &= r["ok"]
    seconds = time.perf_counter() - start
    print(f"executed {len(pages)} pages in {seconds:.0f} s with {jobs} kernels")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path-output", help="default: the repository, or with --fast "
                        "_build/fast (so a fast build keeps the full build's cache)")
    parser.add_argument("--fast", action="store_true",
                        help="DPO_FAST=1 in the kernels: the pages' shortened runs")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds per cell, as in _config.yml")
    parser.add_argument("--outputs-from", type=Path, metavar="DIR",
                        help="with --fast: the notebooks' outputs from colab_check.py "
                        "--keep DIR instead of executing them again")
    args = parser.parse_args(argv)
    if args.outputs_from and not args.fast:
        parser.error("--outputs-from takes fast outputs (colab_check.py runs with "
                     "DPO_FAST=1): a full build executes every page itself, so that "
                     "its full-length outputs come from make book's own run")
    if args.outputs_from and not args.outputs_from.is_dir():
        parser.error(f"--outputs-from {args.outputs_from}: no such folder")
    output = Path(args.path_output or (ROOT / "_build" / "fast" if args.fast else ROOT))
    start = time.perf_counter()
    from dpo_ref.lab.toy import ensure_toy

    ensure_toy()  # once, before two kernels could both start building it
    build_dir = output / "_build"
    stamp = build_stamp(args.fast)
    reason = check_stamp(build_dir, stamp)
    if reason:
        print(reason, flush=True)
    if args.outputs_from:
        taken = take_outputs(build_dir / ".jupyter_cache", args.outputs_from, stamp)
        notebooks = sum(p.suffix == ".ipynb" for p in toc_pages())
        print(f"took {len(taken)} of {notebooks} notebooks' outputs from "
              f"{args.outputs_from}", flush=True)
    fill_cache(build_dir / ".jupyter_cache", args.jobs, args.timeout, args.fast)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    # Same mode for any page jupyter-book executes itself (one that failed above).
    env = {**os.environ, "DPO_FAST": "1" if args.fast else "0"}
    command = [str(jupyter_book), "build", str(ROOT), "--path-output", str(output),
               "--warningiserror", "--nitpick", "--keep-going"]
    result = subprocess.run(command, env=env)
    seconds = time.perf_counter() - start
    print(f"book built in {seconds:.0f} s (exit status {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
