"""``glue`` for notebooks that run both in the book build and on their own (Colab, plain Jupyter).

In the book build, myst-nb's ``glue`` stores a value so the prose can quote it; elsewhere myst-nb may
not be installed and there is nothing to glue into, so the value is only displayed when asked.

Under the seed sweep (``benchmarks/robustness.py`` sets ``DPO_FINDINGS_DIR``) every glued number is
also recorded, so each number a page quotes is measured on every seed.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

try:
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover - depends on the environment
    _myst_glue = None


def glue(name: str, value: Any, display: bool = True) -> None:
    out = os.environ.get("DPO_FINDINGS_DIR")
    if out and isinstance(value, numbers.Real) and not isinstance(value, bool):
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / "glued.jsonl", "a") as f:
            f.write(json.dumps({"name": name, "value": float(value)}) + "\n")
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    elif display:
        from IPython.display import display as show

        show(value)
