"""benchmarks/readme_latency.py: the README's latency table is exactly what the result rows give."""
from __future__ import annotations

import json
from script_helpers import load_script


def _module():
    return load_script("readme_latency.py")


def test_the_readme_table_is_the_rows():
    assert _module().main(["--check"]) == 0, "run: python benchmarks/readme_latency.py"


def test_a_new_row_makes_the_table_stale_and_is_shown_with_its_ratio(tmp_path):
    mod = _module()
    gpu = tmp_path / "results" / "h200"
    gpu.mkdir(parents=True)
    row = dict(case="c", device="H200", commit="abc", date="2026-12-01", torch="2.11")
    rows = [dict(row, impl=mod.PEER, ms=500.0), dict(row, impl="vdrt, 8-bit attention", ms=400.0),
            dict(row, impl="broken", ms=1.0, error="OOM")]
    (gpu / "wan_step_x.json").write_text(json.dumps(rows))
    (gpu / "wan_step_old.json").write_text(json.dumps([dict(row, impl="old", ms=9.0, date="2026-11-01")]))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{mod.BEGIN}\nold table\n{mod.END}\noutro\n")
    args = ["--readme", str(readme), "--results", str(tmp_path / "results")]
    assert mod.main(args + ["--check"]) == 1
    assert mod.main(args) == 0 and mod.main(args + ["--check"]) == 0
    text = readme.read_text()
    assert "| vdrt, 8-bit attention | 400.0 | 1.25x | lossy |" in text
    assert "broken" not in text and "| old |" not in text and "old table" not in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
