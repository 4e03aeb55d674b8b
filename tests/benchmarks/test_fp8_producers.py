"""benchmarks/fp8_producers.py and benchmarks/device/fp8_producers.sh at the CPU smoke size (TINY=1)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device" / "fp8_producers.sh"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file() or shutil.which("bash") is None, reason="needs bash and benchmarks/")


def _run(out: Path, *stages) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "TINY": "1", "OMP_NUM_THREADS": "1", "VDRT_COMMIT": "abc123",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT), *stages], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_shapes_and_step_rows_at_tiny_size(tmp_path):
    r = _run(tmp_path, "shapes", "step")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "fp8_producers_shapes.json").read_text())
    rows += json.loads((tmp_path / "fp8_producers_step.json").read_text())
    assert all(row["commit"] == "abc123" and row["date"] and row["device"] == "cpu" for row in rows)
    chains = [row for row in rows if " gemm " not in row["case"] and "step" not in row["case"]]
    for kind in ("qkv", "ffn_in", "ffn_out"):
        impls = {row["impl"] for row in chains if f" {kind} " in row["case"]}
        assert impls == {"bf16", "fp8-separate", "fp8-producer"}, kind
    for row in chains + [row for row in rows if "step" in row["case"]]:
        assert row["error"] is None and row["ok"] is True and row["ms"] > 0, row
    fp8 = [row for row in chains if row["impl"] != "bf16"]
    assert all(0.005 < row["rel_err"] < 0.06 for row in fp8)  # lossy by the e4m3 codes only, never exact
    assert {row["impl"] for row in rows if "step" in row["case"]} == {"bf16", "fp8-separate", "fp8-producer"}


def test_unknown_stage_is_refused(tmp_path):
    r = _run(tmp_path, "bogus")
    assert r.returncode == 2 and "unknown stage bogus" in r.stdout


def test_bytes_saved_per_block_wan_1_3b():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fp8_producers
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    m, d, f = 32760, 1536, 8960
    saved = fp8_producers.bytes_saved_per_block(m, d, f)
    assert saved["block"] == 14 * m * d + 4 * m * f + 8 * m  # 10md+8m (qkv) + 4md (ffn_in) + 4mf (ffn_out)
    from vdrt.kernels import gelu_quant

    moved = gelu_quant.bytes_moved(m, f)
    assert saved["ffn_out"] == moved["separate"] - moved["fused"]


@pytest.mark.slow
def test_card_forward_rows(tmp_path):
    """--card on a freshly trained tiny teacher: fp32 producer-fed == separate; bf16 within 0.06 of it."""
    from vdrt.export.tiny import train

    argv = ["--arch", "wan", "--out", str(tmp_path), "--steps", "2", "--tokens", "300", "--warmup", "1",
            "--device", "cpu", "--config", '{"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64}',
            "--text-config", '{"dim": 32, "layers": 1, "heads": 2}']
    assert train.main(argv) == 0
    card = tmp_path / "vdrt-tiny-wan-teacher.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VDRT_COMMIT": "abc123"}
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, "fp8_producers.py", "--no-chains", "--card", str(card), "--out", str(out)],
                       cwd=ROOT / "benchmarks", env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {(row["case"].split()[2], row["impl"]): row for row in json.loads(out.read_text())}
    assert rows[("float32", "fp8-producer")]["rel_diff_vs_separate"] == 0
    assert 0 < rows[("bfloat16", "fp8-producer")]["rel_diff_vs_separate"] < 0.06
    assert all(row["ok"] and 0.001 < row["rel_err"] < 0.1 for (_, impl), row in rows.items() if "fp8" in impl)
