"""The notebooks as stored (tests/test_colab.py executes them).

These tests read the notebooks without running them: what Colab shows must be plain Markdown
(Colab does not know MyST), and every notebook ends with exercises whose solutions are folded.
The width of their code is checked with the book's pages (tests/test_code_width.py).
"""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]

MYST_ROLE = re.compile(r"\{[A-Za-z][\w:.+-]*\}`")  # {cite}`key`, {doc}`page`, {glue:text}`name`, ...
MYST_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}|:{3,})[ \t]*\{", re.MULTILINE)  # ```{note}, :::{dropdown}


def cells(path, kind):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == kind]


# Executing them: tests/test_colab.py runs every notebook in a Colab-like venv, on the
# toy with its checks enforced and on two more architectures; the site shows those runs.


def test_notebooks_are_stored_without_outputs():
    assert len(NOTEBOOKS) >= 3
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_markdown_is_plain_markdown(path):
    """No MyST roles or directives: Colab would show them as raw text."""
    for cell in cells(path, "markdown"):
        roles, fences = MYST_ROLE.findall(cell.source), MYST_FENCE.findall(cell.source)
        assert not roles and not fences, f"{path.name}, cell {cell.get('id')}: {roles or fences}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_results_cells_render_on_the_site_and_on_colab(path):
    """A paragraph built from the run's numbers is a code cell that displays Markdown: its code is
    hidden on the site, and myst-nb parses its output as MyST (so that $...$ is typeset)."""
    for cell in cells(path, "code"):
        if "display(Markdown(" in cell.source:
            assert "remove-input" in cell.metadata.get("tags", []), cell.get("id")
            assert cell.metadata.get("mystnb", {}).get("markdown_format") == "myst", cell.get("id")
            assert not MYST_ROLE.search(cell.source), cell.get("id")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_ends_with_exercises_and_folded_solutions(path):
    nb = nbformat.read(path, as_version=4)
    headings = [(i, line) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                for line in c.source.splitlines() if re.match(r"#{1,3} ", line)]
    assert headings and headings[-1][1] == "## Exercises", f"{path.name}: last heading {headings[-1:]}"
    section = "\n".join(c.source for c in nb.cells[headings[-1][0]:] if c.cell_type == "markdown")
    exercises = re.findall(r"^\d+\. ", section, re.MULTILINE)
    solutions = re.findall(r"<details>\s*<summary>Solution</summary>", section)
    assert 2 <= len(exercises) <= 4, f"{path.name}: {len(exercises)} exercises"
    assert len(solutions) >= 1 and section.count("<details>") == section.count("</details>"), path.name
