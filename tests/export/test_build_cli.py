"""`vdrt build` / `vdrt inspect` / `vdrt run` end to end on a pixel-space engine (factorized-tiny, AOTI).

The build reuses the session's factorized-tiny AOTI build through the build cache (same weights,
config, profile and toolchain), and the AOTI backend is made to fail if called: a cache hit is
the only way this test passes quickly.
"""
from __future__ import annotations

import importlib
import json
import re

import pytest
from export_helpers import SHAPES

from vdrt.cli import main

aoti_backend = importlib.import_module("vdrt.export.aoti")


def _flags(name="factorized-tiny"):
    s = SHAPES[name]
    return [f"--{k.replace('_', '-')}={':'.join(map(str, s[k]))}" for k in ("frames", "height", "width", "batch",
                                                                           "text_len")]


def test_build_inspect_run_end_to_end(engines, monkeypatch, tmp_path, capsys):
    _, _, session_dir = engines("factorized-tiny", "aoti")

    def no_compile(*a, **k):
        raise AssertionError("the CLI build should have been a cache hit")

    monkeypatch.setattr(aoti_backend, "build_artifacts", no_compile)
    out = tmp_path / "engine"
    assert main(["build", "factorized-tiny", "--backend", "aoti", "--precision", "fp32", *_flags(),
                 "--device", "cpu", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}: aoti engine, fp32" in said and "frames 1:3:5" in said
    assert (out / "model.pt2").read_bytes() == (session_dir / "model.pt2").read_bytes()

    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "aoti" and info["profiles"]["height"] == {"min": 8, "opt": 16, "max": 32,
                                                                        "multiple": 4}
    gif = tmp_path / "x.gif"
    assert main(["run", str(out), "a red circle bouncing", "-o", str(gif), "--frames", "5", "--height", "32",
                 "--width", "32", "--steps", "2", "--no-progress", "--device", "cpu"]) == 0
    from vdrt.io import read_video

    frames = read_video(gif)
    assert frames.shape[1:] == (32, 32, 3) and 1 <= frames.shape[0] <= 5


@pytest.mark.parametrize("argv, match", [
    (["--frames", "1:2"], r"--frames expects MIN:OPT:MAX"),
    (["--height", "30"], r"--height 30: must be a multiple of 4 pixels"),
    (["--frames", "1:3:99"], r"max_frames=32"),
    (["--precision", "fp8"], r"precision fp8 needs a quantized"),
])
def test_build_bad_input_is_one_line_exit_2(argv, match, tmp_path, capsys):
    code = main(["build", "factorized-tiny", "--backend", "onnx", "--precision", "fp32", "--frames", "1:3:5",
                 "--height", "16", "--width", "16", "--out", str(tmp_path / "e"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("vdrt build: error:")]) == 1
    assert re.search(match, err), err
    assert not (tmp_path / "e").exists()


def test_run_outside_the_profile_is_refused(engines, tmp_path, capsys):
    _, _, out = engines("factorized-tiny", "aoti")
    code = main(["run", str(out), "x", "-o", str(tmp_path / "x.gif"), "--frames", "9", "--height", "32", "--width",
                 "32", "--steps", "1", "--no-progress", "--device", "cpu"])
    assert code == 2
    assert "frames=9" in capsys.readouterr().err


def test_existing_out_is_refused_unless_force(engines, monkeypatch, tmp_path, capsys):
    import shutil

    _, _, session_dir = engines("factorized-tiny", "aoti")
    out = tmp_path / "engine"
    shutil.copytree(session_dir, out)
    before = (out / "manifest.json").read_bytes()
    argv = ["build", "factorized-tiny", "--backend", "aoti", "--precision", "fp32", *_flags(), "--device", "cpu",
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert (out / "manifest.json").read_bytes() == before
    monkeypatch.setattr(aoti_backend, "build_artifacts", lambda *a, **k: pytest.fail("should be a cache hit"))
    assert main([*argv, "--force"]) == 0
    assert (out / "model.pt2").read_bytes() == (session_dir / "model.pt2").read_bytes()


def test_bench_times_an_engine_dir_and_builds_the_asked_backend(engines, tmp_path, capsys):
    _, _, session_dir = engines("factorized-tiny", "onnx")
    size = ["--frames", "3", "--height", "16", "--width", "16", "--repeats", "2", "--device", "cpu"]
    rows = tmp_path / "rows.json"
    assert main(["bench", str(session_dir), *size, "--json", str(rows)]) == 0
    (row,) = json.loads(rows.read_text())
    assert row["impl"] == "vdrt-onnx" and row["case"] == "1x3x16x16 fp32" and row["tflops"] > 0
    assert main(["bench", "factorized-tiny", "--backend", "onnx", *size, "--json", str(rows)]) == 0
    (row,) = json.loads(rows.read_text())
    assert row["impl"] == "vdrt-onnx" and row["model"] == "factorized-tiny" and row["ms"] > 0
    capsys.readouterr()
    assert main(["bench", str(session_dir), *size, "--peers", "compile"]) == 2
    assert "needs the model itself" in capsys.readouterr().err
    assert main(["bench", str(session_dir), *size, "--backend", "aoti"]) == 2
    assert "engine directory built for onnx" in capsys.readouterr().err
