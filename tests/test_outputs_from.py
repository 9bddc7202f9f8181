"""The fast site build shows the Colab check's notebook runs instead of its own.

``colab_check.py --keep DIR`` writes each notebook's passed ``llama`` run;
``build_book.py --fast --outputs-from DIR`` puts those outputs into the execution cache,
as it does for a page it executes itself, unless the copy is stale. Checked on a
temporary cache with made-up outputs: nothing is executed or built.
"""

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_1_identity.ipynb"


@pytest.fixture(scope="module")
def scripts():
    import build_book  # scripts/, on the path (conftest.py)
    import colab_check

    return build_book, colab_check


def executed(path: Path = NOTEBOOK):
    """The notebook as if run: an output on every code cell, timing metadata added."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text=f"cell {i} ran\n")]
            cell.execution_count = i
            cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def cached(build_book, cache_path: Path, page: Path):
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_path))
    if not build_book.is_cached(cache, page):
        return None
    record = cache.match_cache_notebook(build_book.read_page(page))
    return cache.get_cache_bundle(record.pk).nb


def test_colab_check_runs_the_notebooks_unless_asked_for_the_pages(scripts):
    _, colab_check = scripts
    notebooks = colab_check.select_pages()
    assert notebooks and all(p.suffix == ".ipynb" for p in notebooks)
    everything = colab_check.select_pages(pages=True)
    assert set(notebooks) < set(everything)
    assert any(p.suffix == ".md" for p in everything)
    assert colab_check.select_pages(["06_1_identity"]) == [NOTEBOOK]


def test_a_kept_run_fills_the_cache_in_place_of_an_execution(scripts, tmp_path):
    build_book, colab_check = scripts
    keep = tmp_path / "keep"
    colab_check.keep(nbformat.writes(executed()), keep, NOTEBOOK.stem, 12.5)
    cache = tmp_path / ".jupyter_cache"
    taken = build_book.take_outputs(cache, keep, build_book.build_stamp(fast=True))
    assert taken == [NOTEBOOK]
    nb = cached(build_book, cache, NOTEBOOK)  # matched as jupyter-book reads the page
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs[0]["text"].endswith("ran\n") for c in code)
    other = ROOT / "notebooks" / "06_2_sigma_ablation.ipynb"
    assert cached(build_book, cache, other) is None  # no copy: executed as usual


@pytest.mark.parametrize("stale", ["package", "mode", "code"])
def test_a_stale_copy_is_executed_instead(scripts, tmp_path, stale, capsys):
    build_book, colab_check = scripts
    nb = executed()
    if stale == "code":  # run before the notebook's code last changed
        next(c for c in nb.cells if c.cell_type == "code").source += "\nx = 1"
    path = colab_check.keep(nbformat.writes(nb), tmp_path / "keep", NOTEBOOK.stem, 1.0)
    stamp = build_book.build_stamp(fast=True)
    if stale != "code":
        copy = nbformat.read(path, as_version=4)
        changed = {"dpo_ref": "0" * 64} if stale == "package" else {"mode": "full"}
        copy.metadata["colab_check"].update(changed)
        nbformat.write(copy, path)
    cache = tmp_path / ".jupyter_cache"
    assert build_book.take_outputs(cache, tmp_path / "keep", stamp) == []
    assert "not taken" in capsys.readouterr().out
    assert cached(build_book, cache, NOTEBOOK) is None


def test_only_a_fast_build_takes_outputs_from_the_colab_check(scripts, tmp_path,
                                                             capsys):
    build_book, _ = scripts
    with pytest.raises(SystemExit) as exit:  # before anything is built or executed
        build_book.main(["--outputs-from", str(tmp_path),
                         "--path-output", str(tmp_path)])
    assert exit.value.code == 2
    assert "make book's own run" in capsys.readouterr().err
    assert not (tmp_path / "_build").exists()
