"""Calibration of the cache policies: the recorder's signals, the fits, the overlay, and the policies reading them."""
from __future__ import annotations

import logging

import pytest
import torch

from vdrt.errors import ConfigError
from vdrt.samplers.policies import calibration
from vdrt.samplers.policies.cachespec import parse

from cache_helpers import run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def overlay(tmp_path, monkeypatch):
    monkeypatch.setenv("VDRT_CALIBRATION_DIR", str(tmp_path / "cal"))
    return tmp_path / "cal"


def recorded(family="wan-tiny", steps=6):
    rec = calibration.Recorder(0.0)
    ref = run(family, steps=steps)
    out = run(family, [rec], steps=steps)
    assert torch.equal(out, ref)  # recording never changes the output
    return rec.records


def test_recorder_signals_per_step_and_row():
    recs = recorded()
    assert len(recs) == 6 * 2  # steps x CFG rows
    assert [r["step"] for r in recs[:4]] == [0, 0, 1, 1] and [r["row"] for r in recs[:2]] == [0, 1]
    assert all(r["probe_rel"] is None and r["ratio"] is None for r in recs[:2])  # nothing before step 0
    later = recs[2:]
    assert all(r["probe_rel"] > 0 and r["residual_rel"] > 0 and r["magnitude"] > 0 for r in later)
    assert all(0.2 < r["ratio"] < 5 for r in later)


def test_fits_recover_a_known_polynomial_and_mean_ratios():
    xs = [0.01 * k for k in range(1, 30)]
    recs = [{"step": i % 5, "row": 0, "probe_rel": x, "residual_rel": 2 * x * x - 0.5 * x + 0.1, "magnitude": 1.0,
             "ratio": 0.9 + 0.01 * (i % 5) if i % 5 else None} for i, x in enumerate(xs)]
    fit = calibration.fit([recs], num_steps=5)
    c = fit["teacache"]["coefficients"]
    assert len(c) == 5 and fit["teacache"]["r2"] > 0.999999
    assert c[-3:] == pytest.approx([2.0, -0.5, 0.1], abs=1e-6) and c[:2] == pytest.approx([0, 0], abs=1e-5)
    assert fit["magcache"] == {"ratios": pytest.approx([1.0, 0.91, 0.92, 0.93, 0.94]), "num_steps": 5}


def test_too_few_steps_to_fit_is_refused():
    with pytest.raises(ConfigError, match="at least 3 sampling steps"):
        calibration.fit([recorded(steps=1)], num_steps=1)


def test_overlay_round_trip_and_policies_use_it(overlay, caplog):
    fit = calibration.fit([recorded()], num_steps=6, runs={"prompts": ["a"], "seeds": [0]})
    key = calibration.key("wan-tiny", "preset:wan-tiny")
    assert calibration.load(key) is None
    path = calibration.save(key, fit)
    assert path.parent == overlay and path.name.startswith("wan-tiny-")
    got = calibration.load(key)
    assert got["teacache"]["coefficients"] == fit["teacache"]["coefficients"]
    with caplog.at_level(logging.WARNING):
        tea, mag = parse("teacache:0.2").build(got), parse("magcache:0.2").build(got)
    assert "no calibration" not in caplog.text
    assert tea.coefficients == tuple(fit["teacache"]["coefficients"]) and mag.ratios == fit["magcache"]["ratios"]
    run("wan-tiny", [tea], steps=6)
    assert tea.stats["run"] + tea.stats["skipped"] == 12
    with pytest.raises(ConfigError, match="two step-cache policies"):
        run("wan-tiny", [tea, mag], steps=2)


def test_uncalibrated_policies_warn_and_use_their_documented_defaults(caplog):
    with caplog.at_level(logging.WARNING):
        tea = parse("teacache:0.2").build(None)
        mag = parse("magcache:0.2").build({})
        parse("fbcache:0.2").build(None)
    assert tea.coefficients == (1.0, 0.0) and mag.ratios is None
    assert caplog.text.count("no calibration") == 2 and "vdrt calibrate" in caplog.text


def test_magcache_scales_calibrated_ratios_to_another_step_count():
    mag = parse("magcache:0.1").build({"magcache": {"ratios": [1.0, 0.98, 0.96, 0.9, 0.8], "num_steps": 5}})
    mag.reset(5)
    assert mag.gamma(3, {}) == pytest.approx(0.9)
    mag.reset(9)  # steps twice as small: gamma ** (5 / 9) at the nearest calibrated position
    assert mag.gamma(6, {}) == pytest.approx(0.9 ** (5 / 9))


def test_an_unreadable_overlay_says_how_to_fix_it(overlay):
    overlay.mkdir(parents=True)
    (overlay / "m-0.json").write_text("{not json")
    with pytest.raises(ConfigError, match="vdrt calibrate"):
        calibration.load("m-0")


def test_few_points_give_a_low_degree_fit_not_an_interpolating_quartic():
    recs = [{"step": i, "row": 0, "probe_rel": 0.1 * i, "residual_rel": 0.2 * i + 0.05 * (-1) ** i, "magnitude": 1.0,
             "ratio": 1.0} for i in range(1, 6)]
    fit = calibration.fit_teacache(recs)
    assert len(fit["coefficients"]) == 2 and fit["r2"] < 1.0  # a line through 5 noisy points
