"""`vdrt calibrate MODEL`: fits and keeps the policies' coefficients in the overlay; bad input refused before loading."""
from __future__ import annotations

import json
import logging

import pytest

from vdrt.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def overlay(tmp_path, monkeypatch):
    monkeypatch.setenv("VDRT_CALIBRATION_DIR", str(tmp_path / "cal"))
    return tmp_path / "cal"


def test_calibrate_then_generate_uses_the_fit(tmp_path, overlay, capsys, caplog):
    out = tmp_path / "cal.json"
    argv = ["calibrate", "wan-tiny", "--steps", "5", "--frames", "5", "--height", "32", "--width", "32",
            "--seeds", "0", "--prompts", "a red circle;a blue square", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "calibrated wan-tiny: teacache poly" in printed and str(overlay) in printed
    (kept,) = overlay.glob("wan-tiny-*.json")
    cal = json.loads(kept.read_text())["cache_calibration"]
    assert cal == json.loads(out.read_text())["cache_calibration"]
    assert len(cal["teacache"]["coefficients"]) == 5 and cal["teacache"]["points"] == 2 * 2 * 4  # runs x rows x steps-1
    assert len(cal["magcache"]["ratios"]) == 5 and cal["runs"]["prompts"] == ["a red circle", "a blue square"]
    with caplog.at_level(logging.WARNING):
        assert main(["generate", "x", "-o", str(tmp_path / "x.gif"), "--model", "wan-tiny", "--frames", "5",
                     "--height", "32", "--width", "32", "--steps", "4", "--no-progress", "--cache", "magcache:0.1"]) == 0
    assert "no calibration" not in caplog.text


@pytest.mark.parametrize("argv, match", [
    (["wan-tiny", "--steps", "2"], "at least 3"),
    (["vdrt-tiny", "--frames", "5"], "trained at 17 frames"),
    (["wan-tiny", "--seeds", "a,b"], "comma list of whole numbers"),
    (["wan-tiny", "--prompts", ";"], "--prompts is empty"),
    (["wan-tiny", "--height", "30"], "multiple"),
])
def test_bad_input_is_refused_before_loading(argv, match, monkeypatch, capsys):
    import vdrt

    monkeypatch.setattr(vdrt.Pipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded before refusing"))
    assert main(["calibrate", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err, err


def test_an_engine_dir_is_not_calibrated(tmp_path, capsys):
    from vdrt.models import config_from_name

    eng = tmp_path / "engine"
    eng.mkdir()
    (eng / "manifest.json").write_text(json.dumps({"format_version": 1, "backend": "aoti",
                                                   "model_config": config_from_name("wan-tiny").to_dict()}))
    assert main(["calibrate", str(eng)]) == 2
    assert "compiled engine" in capsys.readouterr().err
