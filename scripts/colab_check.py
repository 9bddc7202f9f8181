"""Run every page and notebook as a Colab user gets it, offline.

    python scripts/colab_check.py [--venv DIR] [--work DIR] [--architectures llama qwen2 gpt2]
                                  [--jobs 2] [--only NAME ...] [--output FILE]

1. A fresh venv with only what a Colab runtime has after the notebooks' install cell: CPU torch and
   the libraries Colab ships that the pages use (numpy, pandas, matplotlib, ipywidgets, ipykernel),
   then ``pip install`` of this repository as the install cell does it (not editable). The book
   tooling (myst_nb, jupyter_book, jupytext, sphinx) and the test tooling must not be importable there.
2. Every page of ``_toc.yml`` that executes, as a notebook (``.ipynb``), and every notebook, copied
   alone into an empty folder: no repository around it, as on Colab.
3. Each executed top to bottom with ``DPO_FAST=1`` by that venv's kernel. ``llama``: everything, on the
   toy model as shipped (``MODEL = "toy"``; each page's checks are enforced). ``qwen2``, ``gpt2``: the
   notebooks again, with their marked ``MODEL`` line pointed at a local ``save_pretrained`` folder of
   the toy world built in that architecture (``python -m dpo_ref toy --architecture``): a Qwen2-style
   model with a ChatML template, and a GPT-2-style base model with no chat template and no pad token.

Prints one line per run and exits 1 if any failed. Nothing is downloaded from a model hub; pip needs
the package registry (or its cache) for step 1.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
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
        pip = [str(python), "-m", "pip", "install", "-q"]
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


def build_models(python: Path, work: Path, architectures: list[str]) -> dict[str, str]:
    """``MODEL`` per architecture: "toy" for the Llama toy, a local folder for the others."""
    models = {}
    for arch in architectures:
        if arch == "llama":
            models[arch] = "toy"
            continue
        folder = work / "models" / arch
        subprocess.run([str(python), "-m", "dpo_ref", "toy", "--architecture", arch, "--steps", "300",
                        "--output", str(folder)], check=True, capture_output=True)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="where to make the venv (default: in --work)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--architectures", nargs="+", default=["llama", "qwen2", "gpt2"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="page or notebook names (stems) to run")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="colab-check-"))
    start = time.perf_counter()
    python = make_venv(args.venv or work / "venv")
    models = build_models(python, work, args.architectures)
    pages = [p for p in slow_first(toc_pages()) if not args.only or p.stem in args.only]
    runs = []  # (architecture, prepared notebook)
    for arch, model in models.items():
        for page in pages:
            if arch == "llama" or page.suffix == ".ipynb":  # the pages use the toy; notebooks take MODEL
                runs.append((arch, prepare(page, work / arch / page.stem, model)))
    env = {"DPO_FAST": "1", "JUPYTER_PATH": str(python.parent.parent / "share" / "jupyter"),
           "PYTHONNOUSERSITE": "1"}
    results = execute_all([path for _, path in runs], env, jobs=args.jobs, kernel_name=KERNEL,
                          keep_notebook=True)
    failed = 0
    for (arch, path), result in zip(runs, results):
        nb = json.loads(result.pop("notebook"))
        text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                       for o in c.get("outputs", []))
        result.update(architecture=arch, page=path.stem, checks_passed="checks passed" in text)
        if result["ok"] and arch == "llama" and "Findings(" in json.dumps(nb) and not result["checks_passed"]:
            result.update(ok=False, error="the page's checks did not pass")
        failed += not result["ok"]
        print(f"{arch:6} {path.stem:32} {result['seconds']:7.1f} s  "
              f"{'ok' if result['ok'] else 'FAILED: ' + str(result['error'])}")
    print(f"{len(results)} runs, {failed} failed, {time.perf_counter() - start:.0f} s in all")
    if args.output:
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
