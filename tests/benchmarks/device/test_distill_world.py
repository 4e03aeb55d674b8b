"""benchmarks/device/distill_world.sh on the CPU at a tiny size: students from fresh teachers, then the oracle.

The GPU call of 2026-11-29 wrote no students (the distillation called the sampling loop with a keyword the
loop no longer had) and went on to score them ("no card 'vdrt-tiny-wan'"); on the CPU the same smoke test
passed by scoring students an earlier run had left in /tmp/distill. These tests run the script itself.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vdrt.export.tiny import train

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "device" / "distill_world.sh"
TINY = {"wan": '{"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64}',
        "factorized": '{"dim": 32, "num_heads": 2, "num_layers": 1}'}
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not SCRIPT.is_file() or shutil.which("bash") is None,
                                 reason="needs bash and benchmarks/")]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers")
    for arch, cfg in TINY.items():
        argv = ["--arch", arch, "--out", str(out), "--steps", "2", "--tokens", "300", "--warmup", "1",
                "--device", "cpu", "--config", cfg, "--text-config", '{"dim": 32, "layers": 1, "heads": 2}']
        assert train.main(argv) == 0
    return out


def _run(teachers: Path, out: Path, clips: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "FROM": str(teachers), "DEVICE": "cpu", "MINUTES": "0.05",
           "CLIPS": str(clips), "TINY": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_students_are_distilled_then_scored(teachers, tmp_path):
    r = _run(teachers, tmp_path, clips=1)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for arch in TINY:
        card = json.loads((tmp_path / f"vdrt-tiny-{arch}.json").read_text())
        assert card["trained"]["teacher"]["sha256"] == json.loads(
            (teachers / f"vdrt-tiny-{arch}-teacher.json").read_text())["sha256"]  # this run's, not a stale one
        rows = json.loads((tmp_path / f"quality_{arch}.json").read_text())
        assert rows and (tmp_path / f"sheet_{arch}.png").stat().st_size > 0


def test_a_failed_distillation_stops_before_scoring(teachers, tmp_path):
    broken = tmp_path / "from"
    shutil.copytree(teachers, broken)
    (broken / "vdrt-tiny-wan-teacher.safetensors").write_bytes(b"not weights")  # refused by its sha256
    r = _run(broken, tmp_path / "out", clips=1)
    assert r.returncode == 1
    assert "no student vdrt-tiny-wan was written" in r.stdout and "sha256" in r.stdout
    assert not list((tmp_path / "out").glob("quality_*.json"))
