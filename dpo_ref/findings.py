"""The claims a page makes about its own run: checked, printed, and recorded for the seed sweep.

A page that says "without the σ weight the margin grows 1.5× more" should fail when that stops being
true, and the course should know by how much it holds on other seeds and machines. So a page states
each claim as a number compared with a threshold::

    findings = Findings("sigma_ablation", enforce=MODEL == "toy")
    findings.check("KL unrelated, unweighted / sigmoid", u_kl / s_kl, ">", 2.0)
    findings.done()  # raises if a checked claim failed, else prints "checks passed"

Every claim is checked (a failure does not hide the claims after it), and ``done`` raises one
``AssertionError`` naming each failed claim with its value. When ``DPO_FINDINGS_DIR`` is set (the seed
sweep, ``benchmarks/robustness.py``, sets it), the claims are also written there as JSON, with the
seeds they were measured under, so that thresholds can be set from the worst case of the sweep.
"""

from __future__ import annotations

import json
import operator
import os
from pathlib import Path

OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def seeds() -> tuple[int, int]:
    """``(run seed, toy seed)``: 0 and 0 unless the sweep sets ``DPO_SEED`` / ``DPO_TOY_SEED``."""
    return int(os.environ.get("DPO_SEED", 0)), int(os.environ.get("DPO_TOY_SEED", 0))


class Findings:
    """Claims of one page, each a value compared with a threshold."""

    def __init__(self, page: str, enforce: bool = True):
        self.page, self.enforce, self.claims, self._printed = page, enforce, [], 0

    def check(self, claim: str, value: float, op: str, threshold: float) -> bool:
        """Record ``value op threshold`` under the name ``claim``; return whether it holds."""
        if op not in OPERATORS:
            raise ValueError(f"op must be one of {sorted(OPERATORS)}, got {op!r}")
        holds = bool(OPERATORS[op](float(value), threshold))
        self.claims.append({"claim": claim, "value": float(value), "op": op, "threshold": threshold,
                            "holds": holds})
        return holds

    def done(self) -> None:
        """Write the record if asked, then fail on any claim that does not hold (when enforced).

        A page may call it after each group of checks: it prints the claims checked since the last call
        and rewrites the record with all of them.
        """
        run_seed, toy_seed = seeds()
        out = os.environ.get("DPO_FINDINGS_DIR")
        if out:
            path = Path(out) / f"{self.page}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"page": self.page, "seed": run_seed, "toy_seed": toy_seed, "claims": self.claims}
            path.write_text(json.dumps(record, indent=1) + "\n")
        for c in self.claims[self._printed:]:
            print(f"{'holds' if c['holds'] else 'FAILS'}: {c['claim']}: {c['value']:.4g} {c['op']} {c['threshold']:g}")
        self._printed = len(self.claims)
        failed = [c for c in self.claims if not c["holds"]]
        if failed and self.enforce:
            raise AssertionError("; ".join(f"{c['claim']}: {c['value']:.4g} is not {c['op']} {c['threshold']:g}"
                                           for c in failed))
        # The thresholds were set on the toy model; with another model the claims are only reported.
        print("checks passed" if not failed else f"{len(failed)} claims differ with this model (not enforced)")
