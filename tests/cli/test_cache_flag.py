"""`--cache` on generate / run and in the TOML schema: applied as a step hook, bad input refused before loading."""
from __future__ import annotations

import json
import logging

import pytest

from vdrt.cli import main

SMALL = ["--model", "wan-tiny", "--frames", "5", "--height", "32", "--width", "32", "--steps", "4", "--no-progress"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_loading(monkeypatch):
    """Loading the model fails the test: the refusals must come first."""
    import vdrt

    def load(*a, **k):
        raise AssertionError("the model was loaded before the bad input was refused")
    monkeypatch.setattr(vdrt.Pipeline, "from_pretrained", load)


@pytest.fixture(autouse=True)
def overlay(tmp_path, monkeypatch):
    monkeypatch.setenv("VDRT_CALIBRATION_DIR", str(tmp_path / "cal"))


@pytest.mark.parametrize("extra, match", [
    (["--cache", "deepcache:0.1"], "unknown policy 'deepcache'"),
    (["--cache", "teacache:2"], "outside [0, 1]"),
    (["--cache", "teacache:x"], "must be a number"),
    (["--cache", "fbcache:0.1", "--cuda-graphs"], "drop --cuda-graphs or --cache"),
    (["--cache", "fbcache:0.1", "--gpus", "2", "--device", "cpu"], "drop --gpus or --cache"),
])
def test_bad_cache_input_is_one_line_exit_2_before_loading(extra, match, tmp_path, capsys, no_loading):
    out = tmp_path / "x.gif"
    assert main(["generate", "a red circle", "-o", str(out), *SMALL, *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_an_engine_dir_is_refused_before_loading(tmp_path, capsys, no_loading):
    from vdrt.models import config_from_name

    eng = tmp_path / "engine"
    eng.mkdir()
    (eng / "manifest.json").write_text(json.dumps({"format_version": 1, "backend": "aoti",
                                                   "model_config": config_from_name("wan-tiny").to_dict()}))
    assert main(["run", str(eng), "a red circle", "-o", str(tmp_path / "x.gif"), "--cache", "teacache:0.2",
                 "--no-progress"]) == 2
    assert "compiled engine" in capsys.readouterr().err


def test_generate_with_a_cache_policy_warns_when_uncalibrated_and_writes(tmp_path, caplog):
    out = tmp_path / "x.gif"
    with caplog.at_level(logging.INFO):
        assert main(["generate", "a red circle", "-o", str(out), *SMALL, "--cache", "fbcache:0.5",
                     "--guidance", "3"]) == 0
    assert out.is_file()
    assert "row-steps reused the cached residual" in caplog.text  # the policy ran as a step hook
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        assert main(["generate", "a red circle", "-o", str(out), *SMALL, "--cache", "teacache:0.2", "--force"]) == 0
    assert "teacache: no calibration for this model" in caplog.text


def test_toml_cache_key(tmp_path, capsys, no_loading):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[generate]\ncache = 0.2\n')
    assert main(["generate", "x", "-o", str(tmp_path / "x.gif"), "--config", str(cfg)]) == 2
    assert "cache = 0.2: input should be a valid string" in capsys.readouterr().err
    cfg.write_text('[generate]\ncache = "magcache:1.2"\n')
    assert main(["generate", "x", "-o", str(tmp_path / "x.gif"), "--config", str(cfg)]) == 2
    assert "--cache 'magcache:1.2'" in capsys.readouterr().err


def test_pipeline_hooks_get_the_policy_with_its_calibration(monkeypatch):
    from vdrt.cli.options import build_pipeline
    from vdrt.samplers.policies import calibration
    from vdrt.samplers.policies.teacache import TeaCache

    from vdrt.bench.calibrate import model_key

    fitted = {"teacache": {"coefficients": [2.0, 0.0], "range": [0, 1]}, "magcache": {"ratios": [1.0], "num_steps": 1}}
    calibration.save(model_key("wan-tiny"), fitted)
    pipe = build_pipeline({"model": "wan-tiny", "cache": "teacache:0.3", "device": "cpu"})
    (policy,) = pipe.hooks
    assert isinstance(policy, TeaCache) and policy.coefficients == (2.0, 0.0) and policy.threshold == 0.3
