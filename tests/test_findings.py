import json

import pytest

from dpo_ref.lab.findings import Findings, seeds


def test_every_claim_is_checked_and_each_failure_named(capsys):
    findings = Findings("page")
    assert findings.check("ratio", 2.5, ">", 2.0)
    assert not findings.check("gap", -0.1, ">", 0)
    assert not findings.check("share", 0.95, "<=", 0.9)
    with pytest.raises(AssertionError) as err:
        findings.done()
    assert "gap: -0.1 is not > 0" in str(err.value) and "share: 0.95 is not <= 0.9" in str(err.value)
    assert "ratio" not in str(err.value)
    assert "holds: ratio" in capsys.readouterr().out


def test_claims_are_recorded_with_their_seeds(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DPO_FINDINGS_DIR", str(tmp_path))
    monkeypatch.setenv("DPO_SEED", "3")
    monkeypatch.setenv("DPO_TOY_SEED", "4")
    assert seeds() == (3, 4)
    findings = Findings("page")
    findings.check("a", 1.0, ">=", 1.0)
    findings.done()
    findings.check("b", 0.2, "<", 0.5)
    findings.done()  # a second group of checks: the record holds both, each is printed once
    record = json.loads((tmp_path / "page.json").read_text())
    assert (record["seed"], record["toy_seed"]) == (3, 4)
    assert [c["claim"] for c in record["claims"]] == ["a", "b"] and all(c["holds"] for c in record["claims"])
    out = capsys.readouterr().out
    assert out.count("holds: a") == 1 and out.count("checks passed") == 2


def test_claims_are_only_reported_when_not_enforced(capsys):
    findings = Findings("page", enforce=False)
    findings.check("gap", -1.0, ">", 0)
    findings.done()
    assert "FAILS: gap" in capsys.readouterr().out


def test_an_unknown_comparison_is_refused():
    with pytest.raises(ValueError, match="op must be one of"):
        Findings("page").check("x", 1.0, "==", 1.0)


def test_sweep_values_come_from_the_results_file(tmp_path, monkeypatch):
    import dpo_ref.lab.findings as findings

    results = {"runs": [{"page": "notebooks/a.ipynb", "seed": s, "glued": {"x": float(s)}} for s in (0, 1)]
               + [{"page": "book/b.md", "seed": 0, "glued": {"y": 2.0}}]}
    (tmp_path / "robustness.json").write_text(json.dumps(results))
    monkeypatch.setattr(findings, "_sweep_results", lambda: tmp_path / "robustness.json" if (tmp_path / "robustness.json").exists() else None)
    assert findings.sweep_values("a") == {"x": {0: 0.0, 1: 1.0}}
    assert findings.sweep_values("c") is None
    monkeypatch.setattr(findings, "_sweep_results", lambda: tmp_path / "missing.json" if (tmp_path / "missing.json").exists() else None)
    assert findings.sweep_values("a") is None


def test_a_reported_claim_is_printed_and_recorded_but_never_fails(capsys):
    findings = Findings("page")
    findings.report("in most seeds", 0.3, ">", 0.5)
    findings.done()
    out = capsys.readouterr().out
    assert "reported, does not hold: in most seeds" in out and "checks passed" in out
    assert findings.claims[0]["asserted"] is False


def test_sweep_points_pair_two_values_by_seed(tmp_path, monkeypatch):
    import dpo_ref.lab.findings as findings

    results = {"runs": [{"page": "p.ipynb", "seed": s, "glued": {"kl": 10.0 + s, "r": float(s)}} for s in (0, 1, 2)]}
    (tmp_path / "robustness.json").write_text(json.dumps(results))
    monkeypatch.setattr(findings, "_sweep_results", lambda: tmp_path / "robustness.json" if (tmp_path / "robustness.json").exists() else None)
    assert findings.sweep_points("p", "kl", "r", skip_seed=1) == ([10.0, 12.0], [0.0, 2.0])
    assert findings.sweep_points("p", "kl", "missing") == ([], [])


def test_results_files_ship_with_the_package_for_pages_opened_alone():
    """pyproject.toml maps benchmarks/results/ to dpo_ref/results/ in a wheel (a page on Colab
    reads them there); in the repository load_results reads them in place."""
    import tomllib
    from pathlib import Path

    from dpo_ref.lab.findings import load_results, results_path

    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["dpo_ref.results"] == "benchmarks/results"
    assert results_path("vocab.json") == root / "benchmarks" / "results" / "vocab.json"
    assert "cases" in load_results("vocab.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        results_path("nope.json")
