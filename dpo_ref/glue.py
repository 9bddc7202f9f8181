"""``glue`` for notebooks that run both in the book build and on their own (Colab, plain Jupyter).

In the book build, myst-nb's ``glue`` stores a value so the prose can quote it; elsewhere myst-nb may
not be installed and there is nothing to glue into, so the value is only displayed when asked.
"""

from __future__ import annotations

from typing import Any

try:
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover - depends on the environment
    _myst_glue = None


def glue(name: str, value: Any, display: bool = True) -> None:
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)
    elif display:
        from IPython.display import display as show

        show(value)
