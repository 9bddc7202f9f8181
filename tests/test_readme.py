"""The README's measured numbers are generated from the results files (seed sweep, benchmarks), never typed."""

import copy
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _generator():
    import readme_results  # scripts/, on the path (conftest.py)

    return readme_results


def _block(readme: str, begin: str, end: str) -> str:
    assert readme.count(begin) == 1 and readme.count(end) == 1, begin
    return readme.split(begin, 1)[1].split(end, 1)[0].lstrip("\n")


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


def test_speed_section_and_gpu_paragraph_are_generated_from_the_benchmark_results():
    rr = _generator()
    readme = (ROOT / "README.md").read_text()
    one, two = json.loads(rr.CPU_1.read_text()), json.loads(rr.CPU_2.read_text())
    gpu = json.loads(rr.GPU.read_text())
    ratio = statistics.median(rr.glued_values(json.loads(rr.RESULTS.read_text()))["positions_ratio"])

    # Nothing typed by hand around the generated block: it starts right under the heading and the next prose follows it.
    speed = readme.split("## Speed\n", 1)[1]
    assert speed.lstrip("\n").startswith(rr.SPEED_BEGIN)
    assert speed.split(rr.SPEED_END, 1)[1].lstrip("\n").startswith("With large vocabularies")
    assert _block(readme, rr.SPEED_BEGIN, rr.SPEED_END) == rr.render_speed(one, two, ratio)
    assert readme.count("On a GPU (one") == 1
    assert _block(readme, rr.GPU_BEGIN, rr.GPU_END).startswith("On a GPU (one")
    assert _block(readme, rr.GPU_BEGIN, rr.GPU_END) == rr.render_gpu(gpu)

    # The table has one row per measured case, each with the record's rates.
    table = [line for line in _block(readme, rr.SPEED_BEGIN, rr.SPEED_END).splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(one["main"])
    for line, (key, case) in zip(table, one["main"].items()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == key.replace("/", " / ")
        assert cells[1:4] == [f"{case[e]['pairs_per_s']:.1f}" for e in ("dpo_ref", "trl", "minimal")]


def test_speed_and_gpu_text_follow_the_results_they_are_rendered_from():
    """A figure that stayed fixed while its record changed would be typed, not generated."""
    rr = _generator()
    one, two = json.loads(rr.CPU_1.read_text()), json.loads(rr.CPU_2.read_text())
    gpu = json.loads(rr.GPU.read_text())
    base = rr.render_speed(one, two, 1.5)
    for record, path in ((one, ("wall", "dpo_ref")), (one, ("scaling", "width 768", "trl", "pairs_per_s")),
                         (one, ("techniques", "LoRA, reference = adapters off", "peak_rss_mb")),
                         (two, ("checkpointing", "w384/lora", "trl", "peak_rss_mb")), (two, ("wall", "trl"))):
        changed = copy.deepcopy(record)
        node = changed
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] *= 1.37
        args = (changed, two) if record is one else (one, changed)
        assert rr.render_speed(*args, 1.5) != base, path
    assert rr.render_speed(one, two, 1.9) != base
    changed = copy.deepcopy(gpu)
    changed["speed"][0]["pairs_per_s"] *= 1.37
    assert rr.render_gpu(changed) != rr.render_gpu(gpu)
    changed = copy.deepcopy(gpu)
    changed["correctness"][-1]["max_abs_gap"] = 3.2e-6
    assert "3.2e-6" in rr.render_gpu(changed)
