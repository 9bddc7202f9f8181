"""The package's shape, measured from its source: imports flow one way, modules and the loop stay short,
and the book shows code that exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dpo_ref"


def internal_imports() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {n.module.split(".")[0] for n in ast.walk(tree)
                            if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    return graph


def test_no_import_cycle():
    graph = internal_imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, "import cycle: " + " → ".join(path + [module])
        if module not in done:
            for target in graph[module]:
                visit(target, path + [module])
            done.add(module)

    for module in graph:
        visit(module, [])


def test_modules_and_the_loop_stay_short():
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(lengths.values()) <= 300, sorted(lengths.items(), key=lambda kv: -kv[1])[:3]
    tree = ast.parse((PACKAGE / "trainer.py").read_text())
    train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    assert train.end_lineno - train.lineno + 1 <= 80  # one screen, docstring included


def test_every_literalinclude_names_code_that_exists():
    pattern = re.compile(r"```\{literalinclude\} \.\./(\S+)\n:pyobject: (\S+)")
    found = 0
    for page in (ROOT / "book").glob("*.md"):
        for path, name in pattern.findall(page.read_text()):
            tree = ast.parse((ROOT / path).read_text())
            scope = tree.body
            for part in name.split("."):  # Class.method
                match = [n for n in scope if getattr(n, "name", None) == part]
                assert match, f"{page.name}: {path} has no {name}"
                scope = getattr(match[0], "body", [])
            found += 1
    assert found >= 30
