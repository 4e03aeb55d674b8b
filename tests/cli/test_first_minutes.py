"""The first ten minutes: --version, -v/-q after the verb, --threads, --force, `run --help`, TOML types."""
from __future__ import annotations

import pytest
import torch

from vdrt.cli import main, physical_cores, set_threads

SMALL = ["--model", "factorized-tiny", "--frames", "3", "--height", "16", "--width", "16", "--steps", "1",
         "--no-progress"]


def test_version(capsys):
    import vdrt

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"vdrt {vdrt.__version__}"


def test_global_flags_after_the_verb(tmp_path, capsys):
    n = torch.get_num_threads()
    try:
        assert main(["generate", "x", "-q", "-o", str(tmp_path / "a.gif"), *SMALL]) == 0
        assert main(["-q", "generate", "x", "-o", str(tmp_path / "b.gif"), *SMALL]) == 0
        assert main(["generate", "x", "-v", "--threads", "1", "-o", str(tmp_path / "c.gif"), *SMALL]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)


def test_threads_default_and_bad_value(monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = torch.get_num_threads()
    try:
        assert set_threads(None) == physical_cores() >= 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_threads(None) == 1
    finally:
        torch.set_num_threads(n)
    assert main(["generate", "x", "--threads", "0", *SMALL]) == 2
    assert "--threads 0 must be >= 1" in capsys.readouterr().err


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "clip.gif"
    assert main(["generate", "x", "-o", str(out), *SMALL]) == 0
    capsys.readouterr()
    assert main(["generate", "x", "-o", str(out), *SMALL]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["generate", "x", "-o", str(out), "--force", *SMALL]) == 0


def test_output_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import vdrt

    monkeypatch.setattr(vdrt.Pipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded before checking"))
    assert main(["generate", "x", "-o", str(tmp_path / "clip.avi"), *SMALL]) == 2
    assert "unknown suffix '.avi'" in capsys.readouterr().err
    assert main(["generate", "x", "--fps", "0", "-o", str(tmp_path / "c.gif"), *SMALL]) == 2
    assert "fps=0" in capsys.readouterr().err
    assert main(["generate", "x", "--frames", "30", "--height", "64", "--width", "64", "-o", str(tmp_path / "d.gif"),
                 "--model", "vdrt-tiny"]) == 2
    assert "trained at 17 frames" in capsys.readouterr().err


def test_run_help_describes_run(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "engine directory" in out and "the main job" not in out


@pytest.mark.parametrize("toml, match", [
    ('trust-pickle = "false"\n', "trust-pickle = 'false': input should be a valid boolean"),
    ("frames = true\n", "frames = True: input should be a valid integer"),
    ("seed = 3.7\n", "seed = 3.7: input should be a valid integer"),
    ('guidance = "high"\n', "guidance = 'high': input should be a valid number"),
    ("seed = -1\n", "seed = -1: input should be greater than or equal to 0"),
    ("[generate]\nstepz = 3\n", "unknown key 'stepz'"),
])
def test_toml_values_are_typed(tmp_path, capsys, toml, match):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml)
    assert main(["generate", "x", "--config", str(cfg), "-o", str(tmp_path / "o.gif"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_physical_cores_counts_cores_not_threads():
    import os

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
