"""Executing pages: a cell that displays ipywidgets, which can leave nbclient waiting for
minutes (jupyter/nbclient#312), gets a short timeout and its page one more try."""

import nbformat
import pytest


def notebook(tmp_path, widget_source: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(widget_source)]
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.slow  # two to four kernels start
@pytest.mark.parametrize("hangs", ["first", "always"])
def test_a_widget_cell_that_hangs_is_cut_short_and_its_page_tried_again(
        tmp_path, monkeypatch, hangs):
    import execute_pages  # scripts/, on the path (conftest.py)

    monkeypatch.setattr(execute_pages, "WIDGET_CELL_TIMEOUT", 2)
    flag = tmp_path / "ran-once"
    # stands in for the deadlock: the first run (or every run) outlasts the timeout
    source = ("import ipywidgets, pathlib, time\n"
              f"flag = pathlib.Path({str(flag)!r})\n"
              f"if {hangs == 'always'} or not flag.exists():\n"
              "    flag.touch()\n"
              "    time.sleep(30)\n")
    result = execute_pages.execute(str(notebook(tmp_path, source)), {}, timeout=600)
    assert result["retried"]
    assert result["ok"] == (hangs == "first"), result["error"]
    assert result["seconds"] < 30  # never waited for the sleeping cell
    if hangs == "always":
        assert result["error"].startswith("timed out")


def test_only_widget_cells_get_the_short_timeout():
    import execute_pages

    widget = nbformat.v4.new_code_cell("import ipywidgets as widgets\nwidgets.interact(f)")
    plain = nbformat.v4.new_code_cell("train()")
    assert execute_pages._cell_timeout(widget, 600) == execute_pages.WIDGET_CELL_TIMEOUT
    assert execute_pages._cell_timeout(plain, 600) == 600
