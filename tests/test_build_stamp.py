"""The site build's execution cache does not outlive a change to dpo_ref or to the mode.

jupyter-book's cache keys on each page's code cells only, so ``scripts/build_book.py``
stamps it with a hash of ``dpo_ref``'s source and the mode (full or fast) and drops it
when either differs. Checked on a temporary folder: nothing is executed or built.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build_book():
    import build_book  # scripts/, on the path (conftest.py)

    return build_book


def fill(build_dir: Path) -> None:
    """A stand-in for a filled cache and the Sphinx environment read from it."""
    for name in (".jupyter_cache", ".doctrees"):
        (build_dir / name).mkdir(parents=True, exist_ok=True)
        (build_dir / name / "entry").write_text("outputs")


def kept(build_dir: Path) -> bool:
    names = (".jupyter_cache", ".doctrees")
    return all((build_dir / name / "entry").exists() for name in names)


def test_the_package_hash_follows_every_python_file_only(build_book, tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    first = build_book.package_hash(package)
    assert build_book.package_hash(package) == first
    (package / "notes.txt").write_text("not code")
    assert build_book.package_hash(package) == first
    (package / "sub" / "b.py").write_text("y = 3\n")  # a nested module changed
    changed = build_book.package_hash(package)
    assert changed != first
    (package / "sub" / "c.py").write_text("")  # a new, empty module
    assert build_book.package_hash(package) != changed


def test_the_cache_is_kept_for_the_same_source_and_mode(build_book, tmp_path):
    stamp = {"mode": "full", "dpo_ref": "a" * 64}
    assert "no execution cache" in build_book.check_stamp(tmp_path, stamp)
    fill(tmp_path)
    assert build_book.check_stamp(tmp_path, dict(stamp)) is None
    assert kept(tmp_path)


@pytest.mark.parametrize("change, says", [
    ({"dpo_ref": "b" * 64}, "dpo_ref changed"),
    ({"mode": "fast"}, "full outputs, this is a fast build"),
    ({"mode": "fast", "dpo_ref": "b" * 64}, "dpo_ref changed"),
])
def test_a_changed_package_or_mode_drops_the_cache(build_book, tmp_path, change, says):
    stamp = {"mode": "full", "dpo_ref": "a" * 64}
    build_book.check_stamp(tmp_path, stamp)
    fill(tmp_path)
    new = {**stamp, **change}
    reason = build_book.check_stamp(tmp_path, new)
    assert reason and says in reason and "executed again" in reason
    assert not (tmp_path / ".jupyter_cache").exists()
    assert not (tmp_path / ".doctrees").exists()  # else Sphinx keeps the old outputs
    assert json.loads((tmp_path / build_book.STAMP).read_text()) == new
    fill(tmp_path)  # the pages executed under the new stamp are kept from now on
    assert build_book.check_stamp(tmp_path, dict(new)) is None and kept(tmp_path)


def test_a_cache_without_a_stamp_is_dropped(build_book, tmp_path):
    fill(tmp_path)  # filled before stamps existed, or by jupyter-book alone
    reason = build_book.check_stamp(tmp_path, {"mode": "full", "dpo_ref": "a" * 64})
    assert reason and "no stamp" in reason
    assert not (tmp_path / ".jupyter_cache").exists()


def test_the_stamp_names_the_mode_and_this_package(build_book):
    full, fast = build_book.build_stamp(False), build_book.build_stamp(True)
    assert (full["mode"], fast["mode"]) == ("full", "fast")
    here = build_book.package_hash(ROOT / "dpo_ref")
    assert full["dpo_ref"] == fast["dpo_ref"] == here
