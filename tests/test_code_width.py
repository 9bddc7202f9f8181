"""Code cells fit the site's text column: no line of a code cell is wider than 88 characters.

Wider lines make a cell scroll sideways on the rendered page. The cells are read as the book build
reads them (myst-nb's reader for ``book/*.md``, nbformat for ``notebooks/*.ipynb``), so MyST
directive options such as ``:tags: [...]`` are not counted; no cell is executed. The pages
show ``dpo_ref``'s own code with ``literalinclude``, so its source is held to the same width.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_WIDTH = 88
PAGES = sorted([*(ROOT / "book").glob("*.md"), *(ROOT / "notebooks").glob("*.ipynb")])
PACKAGE = ROOT / "dpo_ref"


def read_cells(path: Path) -> list:
    if path.suffix == ".ipynb":
        import nbformat

        return nbformat.read(path, as_version=4).cells
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text(), path=path).cells


def test_there_are_pages_to_check():
    assert len([p for p in PAGES if p.suffix == ".md"]) >= 10
    assert any(p.suffix == ".ipynb" for p in PAGES)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_lines_fit_the_text_column(path):
    too_wide = []
    for index, cell in enumerate(read_cells(path)):
        if cell.cell_type != "code":
            continue
        for number, line in enumerate(cell.source.splitlines(), start=1):
            if len(line) > MAX_WIDTH:
                too_wide.append(f"  {path.relative_to(ROOT)}: cell {index}, line {number} "
                                f"({len(line)} characters): {line.strip()}")
    assert not too_wide, (f"{len(too_wide)} code line(s) wider than {MAX_WIDTH} characters:\n"
                          + "\n".join(too_wide))


def test_dpo_ref_lines_fit_the_text_column():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 10
    too_wide = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if len(line) > MAX_WIDTH:
                too_wide.append(f"  {path.relative_to(ROOT)}: line {number} "
                                f"({len(line)} characters): {line.strip()}")
    assert not too_wide, (f"{len(too_wide)} line(s) of dpo_ref wider than {MAX_WIDTH} characters:\n"
                          + "\n".join(too_wide))
