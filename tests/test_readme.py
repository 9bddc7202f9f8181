"""The README's measured numbers are generated from the seed sweep's results file, never typed."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_measured_section_matches_the_results_file():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_results.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_asserted_claim_of_the_sweep_held_in_every_seed():
    import json

    results = json.loads((ROOT / "benchmarks" / "results" / "robustness.json").read_text())
    seeds = sorted({r["seed"] for r in results["runs"]})
    assert len(seeds) >= 5
    for page, summary in results["summary"].items():
        assert not summary["errors"], (page, summary["errors"])
        assert sorted(summary["seeds"]) == seeds, page
        for claim, c in summary["claims"].items():
            if c["asserted"]:  # a reported claim is stated on its page as holding in some seeds
                assert c["holds"] == f"{len(seeds)}/{len(seeds)}", (page, claim, c["values"])
