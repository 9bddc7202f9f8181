"""Run every notebook as a Colab user gets it, offline.

    python scripts/colab_check.py [--venv DIR] [--work DIR] [--jobs 2] [--only NAME ...]
                                  [--architectures llama qwen2 gpt2] [--pages]
                                  [--keep DIR] [--output FILE]

1. A fresh venv with only what a Colab runtime has after the notebooks' install cell:
   CPU torch and the libraries Colab ships that the pages use (numpy, pandas,
   matplotlib, ipywidgets, ipykernel), then ``pip install`` of this repository as the
   install cell does it (not editable). The book tooling (myst_nb, jupyter_book,
   jupytext, sphinx) and the test tooling must not be importable there.
2. Every notebook of ``_toc.yml`` copied alone into an empty folder: no repository
   around it, as on Colab. Notebooks only by default, because Colab opens only them:
   the site shows no Colab button on a MyST ``.md`` page (``_assets/
   colab-only-notebooks.js``), and the site build executes those pages in the book
   venv, which has the myst-nb their ``{glue}`` roles need. ``--pages`` adds them,
   exported to ``.ipynb``, to the ``llama`` pass.
3. Each executed top to bottom with ``DPO_FAST=1`` by that venv's kernel. ``llama``: on
   the toy model as shipped (``MODEL = "toy"``; each page's checks are enforced).
   ``qwen2``, ``gpt2``: the notebooks again, with their marked ``MODEL`` line pointed
   at a local ``save_pretrained`` folder of the toy world built in that architecture
   (``python -m dpo_ref toy --architecture``): a Qwen2-style model with a ChatML
   template, and a GPT-2-style base model with no chat template and no pad token.

``--keep DIR`` writes each notebook's passed ``llama`` run to ``DIR/<stem>.ipynb``,
stamped with the mode and ``dpo_ref``'s source hash, for ``build_book.py --fast
--outputs-from DIR``: the fast site then shows these outputs instead of executing the
notebooks a second time. The notebooks store their glued numbers nowhere without
myst-nb, which is sound because no page's prose refers to them (their Markdown is
plain, and each ``.md`` page glues its own). Only notebooks are kept: an ``.md`` page
run here has no glued values for its roles.

Prints one line per run and exits 1 if any failed. Nothing is downloaded from a model
hub; pip needs the package registry (or its cache) for step 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_book import build_stamp  # noqa: E402
from execute_pages import ROOT, execute_all, read_page, slow_first, toc_pages  # noqa: E402

# Colab ships these (and more); the pages and notebooks may import them without installing.
COLAB_SHIPS = ["numpy", "pandas", "matplotlib", "ipywidgets", "ipykernel"]
NOT_ON_COLAB = ["myst_nb", "jupyter_book", "jupytext", "sphinx", "pytest", "trl"]
KERNEL = "dpo-colab"
MODEL_LINE = re.compile(r'^MODEL = "toy"', re.M)
OLD_NAME_LINE = re.compile(r"^OLD_NAME = None", re.M)


def make_venv(venv: Path) -> Path:
    """The Colab-like environment; its python. Reused if it is already complete."""
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        # --no-compile: no .pyc for every file of torch and transformers up front;
        # Python compiles what a notebook imports when it imports it
        pip = [str(python), "-m", "pip", "install", "-q", "--no-compile"]
        cpu_index = ["--timeout", "15", "--retries", "0", "--index-url", "https://download.pytorch.org/whl/cpu"]
        if subprocess.run(pip + cpu_index + ["torch==2.13.0"]).returncode:  # as scripts/setup.sh does
            subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + COLAB_SHIPS + [str(ROOT)], check=True)
        subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", KERNEL],
                       check=True, capture_output=True)
        (venv / ".complete").write_text("")
    else:  # a reused venv gets this working tree's dpo_ref
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
                       check=True)
    present = [m for m in NOT_ON_COLAB if subprocess.run(
        [str(python), "-c", f"import {m}"], capture_output=True).returncode == 0]
    if present:
        raise SystemExit(f"the Colab venv {venv} must not have {', '.join(present)}")
    return python


def build_models(work: Path, architectures: list[str]) -> dict[str, str]:
    """``MODEL`` per architecture: "toy" for the Llama toy, a local folder for the others.

    Built by this interpreter (which has the working tree's dpo_ref), so that
    ``main`` can build them while the venv is made: the two take minutes each on a
    fresh machine. The toys land in the model cache and are copied from there later.
    """
    models = {}
    for arch in architectures:
        if arch == "llama":
            models[arch] = "toy"
            continue
        folder = work / "models" / arch
        subprocess.run([sys.executable, "-m", "dpo_ref", "toy", "--architecture", arch,
                        "--steps", "300", "--output", str(folder)],
                       check=True, capture_output=True)
        models[arch] = str(folder)
    return models


def prepare(page: Path, folder: Path, model: str) -> Path:
    """``page`` as a notebook alone in ``folder``, its ``MODEL`` line set to ``model``."""
    import nbformat

    nb = read_page(page)
    if model != "toy":
        changed = 0
        for cell in nb.cells:
            if cell.cell_type == "code" and MODEL_LINE.search(cell.source):
                cell.source = MODEL_LINE.sub(f"MODEL = {model!r}", cell.source)
                # the toys in every architecture call themselves Llama, as the Llama toy does
                cell.source = OLD_NAME_LINE.sub('OLD_NAME = "Llama"', cell.source)
                changed += 1
        if changed != 1:
            raise SystemExit(f"{page.name}: expected one marked `MODEL = \"toy\"` line, found {changed}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{page.stem}.ipynb"
    nbformat.write(nb, path)
    return path


def select_pages(only: list[str] | None = None, pages: bool = False) -> list[Path]:
    """The toc's notebooks (with ``pages`` its executed .md pages too), slow first."""
    return [p for p in slow_first(toc_pages())
            if (pages or p.suffix == ".ipynb") and (not only or p.stem in only)]


def keep(notebook: str, folder: Path, stem: str, seconds: float,
         stamp: dict | None = None) -> Path:
    """Write an executed notebook (nbformat JSON) for ``build_book.py --outputs-from``.

    ``stamp`` (default: this ``dpo_ref``'s) is the one a fast site build's cache
    carries: that build refuses a copy executed with another ``dpo_ref``, as it drops a
    cache filled by one.
    """
    import nbformat

    nb = nbformat.reads(notebook, as_version=4)
    stamp = stamp or build_stamp(fast=True)
    nb.metadata["colab_check"] = {**stamp, "seconds": seconds}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path,
                        help="where to make the venv (default: in --work)")
    parser.add_argument("--work", type=Path,
                        help="scratch folder (default: a new temporary one)")
    parser.add_argument("--architectures", nargs="+",
                        default=["llama", "qwen2", "gpt2"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+",
                        help="page or notebook names (stems) to run")
    parser.add_argument("--pages", action="store_true",
                        help="also the MyST .md pages, on llama (Colab cannot "
                        "open them; the site build executes them)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write each notebook's passed llama run to "
                        "DIR/<stem>.ipynb (for build_book.py --outputs-from DIR)")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="colab-check-"))
    start = time.perf_counter()
    pages = select_pages(args.only, args.pages)
    if args.keep:  # a copy from an earlier run must not stand in for one that fails now
        for page in pages:
            (args.keep / f"{page.stem}.ipynb").unlink(missing_ok=True)
    stamp = build_stamp(fast=True)  # the dpo_ref that make_venv installs just after
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the models while pip works
        building = pool.submit(build_models, work, args.architectures)
        python = make_venv(args.venv or work / "venv")
        models = building.result()
    runs = []  # (architecture, page, prepared notebook)
    for arch, model in models.items():
        for page in pages:
            # the .md pages use the toy; the notebooks take MODEL
            if arch == "llama" or page.suffix == ".ipynb":
                runs.append((arch, page, prepare(page, work / arch / page.stem, model)))
    env = {"DPO_FAST": "1", "PYTHONNOUSERSITE": "1",
           "JUPYTER_PATH": str(python.parent.parent / "share" / "jupyter")}
    results = execute_all([path for _, _, path in runs], env, jobs=args.jobs,
                          kernel_name=KERNEL, keep_notebook=True)
    failed = 0
    for (arch, page, path), result in zip(runs, results):
        notebook = result.pop("notebook")
        nb = json.loads(notebook)
        text = "".join("".join(o.get("text", "")) for c in nb["cells"]
                       if c["cell_type"] == "code" for o in c.get("outputs", []))
        result.update(architecture=arch, page=path.stem,
                      checks_passed="checks passed" in text)
        if result["ok"] and arch == "llama" and "Findings(" in notebook \
                and not result["checks_passed"]:
            result.update(ok=False, error="the page's checks did not pass")
        if args.keep and result["ok"] and arch == "llama" and page.suffix == ".ipynb":
            keep(notebook, args.keep, page.stem, result["seconds"], stamp)
        failed += not result["ok"]
        print(f"{arch:6} {path.stem:32} {result['seconds']:7.1f} s  "
              f"{'ok' if result['ok'] else 'FAILED: ' + str(result['error'])}")
    seconds = time.perf_counter() - start
    print(f"{len(results)} runs, {failed} failed, {seconds:.0f} s in all")
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
