"""benchmarks/soak.py (run on the H200 by benchmarks/device/soak.sh): a tiny CPU soak writes a row that says
whether memory stayed flat and latency stable, and the estimate stage writes estimate-vs-peak rows."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not in this tree")


def _run(tmp_path, *args):
    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *args], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())


def test_a_tiny_soak_reports_memory_and_latency(tmp_path):
    (row,) = _run(tmp_path, "--model", "factorized-tiny", "--n", "24", "--warmup", "2", "--frames", "3", "--height",
                  "16", "--width", "16", "--steps", "1", "--series", str(tmp_path / "s.json"))
    assert row["bench"] == "soak" and row["n"] == 24 and not row["stopped_early"]
    assert 0 < row["p50_ms"] <= row["p99_ms"] and row["rss_start_mb"] > 0
    assert row["cuda_allocated_start_mb"] is None  # CPU
    assert isinstance(row["flat"], bool) and isinstance(row["stable"], bool)
    series = json.loads((tmp_path / "s.json").read_text())
    assert len(series["ms"]) == len(series["rss"]) == 24


def test_the_budget_stops_a_soak_and_says_so(tmp_path):
    (row,) = _run(tmp_path, "--model", "factorized-tiny", "--n", "100000", "--warmup", "0", "--frames", "3", "--height",
                  "16", "--width", "16", "--steps", "1", "--seconds", "3")
    assert row["stopped_early"] and 0 < row["n"] < 100000


def test_the_estimate_stage_compares_estimate_and_peak(tmp_path):
    rows = _run(tmp_path, "--stage", "estimate")
    assert [r["bench"] for r in rows] == ["memory_estimate"] * 2
    assert all(r["peak_gb"] > 0 and r["estimate_gb"] >= r["peak_gb"] for r in rows), rows
