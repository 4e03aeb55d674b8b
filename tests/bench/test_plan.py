"""`vdrt bench` flags -> BenchPlan: lists multiply, and every conflict or bad value is refused before loading."""
from __future__ import annotations

import json
import sys

import pytest

from vdrt.cli import main, parser


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a model fails the test: the refusals must come first."""
    import vdrt.bench.step

    monkeypatch.setattr(vdrt.bench.step, "load_target", lambda *a, **k: pytest.fail("loaded before refusing"))


def plan_of(*argv):
    from vdrt.bench.plan import plan_from_args

    return plan_from_args(parser().parse_args(["bench", *argv]))


def test_lists_multiply_and_defaults():
    p = plan_of("wan-tiny", "--frames", "5,9", "--height", "32", "--width", "32,48", "--backend", "torch,aoti",
                "--attention", "sdpa,vdrt-int8", "--cache", "teacache:0.1,fbcache:0.2", "--percentiles", "50,90,99",
                "--device", "cpu")
    assert p.shapes == ((5, 32, 32), (5, 32, 48), (9, 32, 32), (9, 32, 48))
    assert p.backends == ("torch", "aoti") and p.attentions == ("sdpa", "vdrt-int8")
    assert [str(c) for c in p.caches] == ["None", "teacache:0.1", "fbcache:0.2"]  # the uncached baseline first
    assert p.timing.percentiles == (50, 90, 99) and p.timing.iterations == 10 and p.timing.warmup == 1
    assert plan_of("--shapes", "5x32x32,9x64x64", "--device", "cpu").shapes == ((5, 32, 32), (9, 64, 64))
    d = plan_of("--duration", "0.5", "--device", "cpu").timing
    assert d.duration == 0.5 and d.iterations is None
    assert plan_of("--repeats", "3", "--device", "cpu").timing.iterations == 3  # the older name


@pytest.mark.parametrize("argv, match", [
    (["--iterations", "3", "--duration", "1"], "--iterations and --duration both given"),
    (["--repeats", "3", "--iterations", "3"], "older name of --iterations"),
    (["--warmup", "-1"], "--warmup -1 must be"),
    (["--iterations", "0"], "--iterations 0 must be >= 1"),
    (["--duration", "0"], "seconds > 0"),
    (["--percentiles", "50,120"], r"each must lie in (0, 100]"),
    (["--percentiles", "p50"], "comma list of numbers"),
    (["--cuda-graphs"], "--cuda-graphs needs a CUDA device"),
    (["--cache", "teacache:0.1", "--cuda-graphs"], "two runs"),
    (["--cache", "teacache:0.1", "--backend", "aoti"], "add torch to --backend"),
    (["--cache", "deepcache:0.1"], "unknown policy 'deepcache'"),
    (["--cache", "teacache:3"], "outside [0, 1]"),
    (["--attention", "sdpa,magic"], "--attention magic: unknown"),
    (["--backend", "torch,tensorrt"], "--backend tensorrt: unknown"),
    (["--shapes", "5x32x32", "--frames", "5"], "--shapes and --frames/--height/--width both given"),
    (["--shapes", "5x32"], "FRAMESxHEIGHTxWIDTH"),
    (["--frames", "5,a"], "comma list"),
    (["--frames", "0"], "--frames 0 must be >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--cache", "fbcache", "--cache-steps", "1"], "--cache-steps >= 2"),
    (["--batch", "0"], "--batch 0"),
    (["--precision", "fp64"], "--precision 'fp64'"),
])
def test_bad_flags_are_one_line_exit_2_before_loading(argv, match, capsys, no_loading):
    assert main(["bench", "wan-tiny", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_unwritable_outputs_are_refused_up_front(tmp_path, capsys, no_loading):
    f = tmp_path / "a-file"
    f.write_text("x")
    for argv, match in [(["--report", str(f / "rep")], "is a file, so the folder cannot be made"),
                        (["--report", str(f)], "is a file; give a folder"),
                        (["--report", "/proc/vdrt-report"], "cannot be written"),
                        (["--out", str(tmp_path)], "is a folder; give a file name"),
                        (["--out", str(f / "rows.json")], "is a file, so the folder cannot be made")]:
        assert main(["bench", "wan-tiny", "--device", "cpu", *argv]) == 2
        assert match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing left behind


def test_report_needs_matplotlib_and_a_readable_store(tmp_path, capsys, monkeypatch, no_loading):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "rows.json").write_text("{broken")
    assert main(["bench", "wan-tiny", "--device", "cpu", "--report", str(tmp_path)]) == 2
    assert "rows.json is unreadable" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "wan-tiny", "--device", "cpu", "--report", str(tmp_path / "new")]) == 2
    assert "pip install 'vdrt[bench]'" in capsys.readouterr().err


def test_engine_dirs_run_as_built(tmp_path, capsys, no_loading):
    from vdrt.models import config_from_name

    eng = tmp_path / "engine"
    eng.mkdir()
    (eng / "manifest.json").write_text(json.dumps({"format_version": 1, "backend": "aoti",
                                                   "model_config": config_from_name("wan-tiny").to_dict()}))
    for extra in (["--peers", "compile"], ["--cache", "fbcache"], ["--backend", "onnx"], ["--attention", "vdrt"]):
        assert main(["bench", str(eng), "--device", "cpu", *extra]) == 2
        assert "needs the model itself" in capsys.readouterr().err


def test_quality_refuses_timing_flags(capsys):
    assert main(["bench", "--quality", "--backend", "aoti", "--cache", "fbcache"]) == 2
    assert "--backend, --cache are timing flags" in capsys.readouterr().err
