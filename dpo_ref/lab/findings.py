"""The claims a page makes about its own run: checked, printed, and recorded for the
seed sweep.

A page that says "without the σ weight the margin grows 1.5× more" should fail when
that stops being true, and the course should know by how much it holds on other seeds
and machines. So a page states each claim as a number compared with a threshold::

    findings = Findings("06_2_sigma_ablation", enforce=MODEL == "toy")
    findings.check("KL unrelated, unweighted / sigmoid", u_kl / s_kl, ">", 2.0)
    findings.done()  # raises if a checked claim failed, else prints "checks passed"

Every claim is checked (a failure does not hide the claims after it), and ``done``
raises one ``AssertionError`` naming each failed claim with its value. When
``DPO_FINDINGS_DIR`` is set (the seed sweep, ``benchmarks/robustness.py``, sets it), the
claims are also written there as JSON, with the seeds they were measured under, so that
thresholds can be set from the worst case of the sweep.

``glue`` is how a page quotes a number in its prose: in the book build it is myst-nb's
``glue``; on Colab or in plain Jupyter (no myst-nb) the value is only displayed. Under
the sweep every glued number is recorded too, so each number a page quotes is measured
on every seed.
"""

from __future__ import annotations

import json
import numbers
import operator
import os
from pathlib import Path
from typing import Any

try:
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover - depends on the environment
    _myst_glue = None

OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def seeds() -> tuple[int, int]:
    """``(run seed, toy seed)``: 0 and 0 unless the sweep sets
    ``DPO_SEED`` / ``DPO_TOY_SEED``."""
    return int(os.environ.get("DPO_SEED", 0)), int(os.environ.get("DPO_TOY_SEED", 0))


class Findings:
    """Claims of one page, each a value compared with a threshold."""

    def __init__(self, page: str, enforce: bool = True):
        self.page, self.enforce, self.claims, self._printed = page, enforce, [], 0

    def check(self, claim: str, value: float, op: str, threshold: float) -> bool:
        """Record ``value op threshold`` under the name ``claim``; return whether it
        holds."""
        return self._record(claim, value, op, threshold, asserted=True)

    def report(self, claim: str, value: float, op: str, threshold: float) -> bool:
        """Record a claim that does not hold in every seed of the sweep: printed, never
        asserted.

        The page states it as what it is ("in most seeds"); the sweep's table shows in
        how many.
        """
        return self._record(claim, value, op, threshold, asserted=False)

    def _record(self, claim: str, value: float, op: str, threshold: float,
                asserted: bool) -> bool:
        if op not in OPERATORS:
            raise ValueError(f"op must be one of {sorted(OPERATORS)}, got {op!r}")
        holds = bool(OPERATORS[op](float(value), threshold))
        self.claims.append({"claim": claim, "value": float(value), "op": op,
                            "threshold": threshold, "holds": holds,
                            "asserted": asserted})
        return holds

    def show(self) -> None:
        """Print the claims checked since the last call and write the record (when
        asked); never fail.

        A page with several groups of checks calls it after each group and ``done`` once
        at its end, so that a failed claim does not stop the claims after it from being
        measured.
        """
        run_seed, toy_seed = seeds()
        out = os.environ.get("DPO_FINDINGS_DIR")
        if out:
            path = Path(out) / f"{self.page}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"page": self.page, "seed": run_seed, "toy_seed": toy_seed,
                      "claims": self.claims}
            path.write_text(json.dumps(record, indent=1) + "\n")
        for c in self.claims[self._printed:]:
            status = ("holds" if c["holds"] else "FAILS") if c["asserted"] else (
                "reported, holds" if c["holds"] else "reported, does not hold")
            print(f"{status}: {c['claim']}: "
                  f"{c['value']:.4g} {c['op']} {c['threshold']:g}")
        self._printed = len(self.claims)

    def done(self) -> None:
        """Show the new claims, then fail on any asserted claim that does not hold (when
        enforced)."""
        self.show()
        failed = [c for c in self.claims if c["asserted"] and not c["holds"]]
        if failed and self.enforce:
            raise AssertionError("; ".join(
                f"{c['claim']}: {c['value']:.4g} is not {c['op']} {c['threshold']:g}"
                for c in failed))
        # The thresholds were set on the toy model; with another model the claims are
        # only reported.
        print("checks passed" if not failed
              else f"{len(failed)} claims differ with this model (not enforced)")


def results_path(name: str) -> Path:
    """A measured results file the pages show (``benchmarks/results/NAME`` of the
    repository).

    A wheel carries them as ``dpo_ref/results/`` (pyproject.toml), so a page opened on
    its own, on Colab, reads the same numbers as the book build in the repository.
    """
    package = Path(__file__).resolve().parent.parent  # dpo_ref/
    for folder in (package.parent / "benchmarks" / "results", package / "results"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"results file {name} is in neither the repository nor "
                            "the installed package")


def load_results(name: str) -> Any:
    """The parsed JSON of the results file ``name`` (see ``results_path``)."""
    return json.loads(results_path(name).read_text())


def _sweep_results() -> Path | None:
    try:
        return results_path("robustness.json")
    except FileNotFoundError:
        return None


def sweep_values(page: str) -> dict[str, dict[int, float]] | None:
    """Every number ``page`` glued, on every seed of the sweep:
    ``{name: {seed: value}}``.

    Read from ``robustness.json`` (``results_path``), so that a figure can show the
    seed-to-seed spread next to this run; ``None`` where the file is not at hand.
    """
    sweep = _sweep_results()
    if sweep is None:
        return None
    values: dict[str, dict[int, float]] = {}
    for run in json.loads(sweep.read_text())["runs"]:
        if Path(run["page"]).stem == page:
            for name, value in run.get("glued", {}).items():
                values.setdefault(name, {})[run["seed"]] = value
    return values or None


def sweep_points(page: str, x: str, y: str,
                 skip_seed: int | None = None) -> tuple[list[float], list[float]]:
    """The glued values ``x`` and ``y`` of ``page`` on every seed of the sweep (but
    ``skip_seed``), as two lists for a scatter plot of the seed-to-seed spread; empty
    where the sweep is not at hand."""
    values = sweep_values(page) or {}
    xs, ys = values.get(x, {}), values.get(y, {})
    seeds = sorted(s for s in xs if s in ys and s != skip_seed)
    return [xs[s] for s in seeds], [ys[s] for s in seeds]


def glue(name: str, value: Any, display: bool = True) -> None:
    """Store ``value`` under ``name`` for the prose (``{glue:text}`name```); record it
    for the sweep."""
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
