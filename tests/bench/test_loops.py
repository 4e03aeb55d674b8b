"""`vdrt bench --cache`: whole denoise loops per policy against the uncached loop (same noise)."""
import json

import pytest

from vdrt.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_loop_rows_per_policy(tmp_path, monkeypatch):
    monkeypatch.setenv("VDRT_CALIBRATION_DIR", str(tmp_path / "cal"))
    out = tmp_path / "rows.json"
    assert main(["bench", "wan-tiny", "--frames", "5", "--height", "32", "--width", "32", "--iterations", "1",
                 "--cache", "teacache:0,fbcache:0.5", "--cache-steps", "6", "--device", "cpu", "--json", str(out)]) == 0
    step, none, zero, fb = json.loads(out.read_text())
    assert step["kind"] == "step" and {r["kind"] for r in (none, zero, fb)} == {"loop"}
    assert none["case"] == "1x5x32x32 fp32, 6-step loop, guidance 5" == fb["case"]
    assert [r["cache"] for r in (none, zero, fb)] == ["none", "teacache:0", "fbcache:0.5"]
    assert none["skipped_fraction"] == 0 and none["rel_err_vs_uncached"] == 0 and none["speedup_vs_uncached"] == 1
    assert zero["skipped_fraction"] == 0 and zero["rel_err_vs_uncached"] == 0.0  # threshold 0: bit-identical
    assert fb["skipped_fraction"] > 0.3 and 0 < fb["rel_err_vs_uncached"] < 0.1
    assert fb["ms_per_step"] == pytest.approx(fb["ms"] / 6) and fb["steps"] == 6
    assert fb["speedup_vs_uncached"] == pytest.approx(none["ms"] / fb["ms"])
