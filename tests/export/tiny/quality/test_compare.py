"""Paired comparison: identical results are not worse, damage is, intervals cover the difference, bad input."""
import numpy as np
import pytest

from vdrt.errors import ConfigError
from vdrt.export.tiny.quality import oracle
from vdrt.export.tiny.quality.baselines import Baseline
from vdrt.export.tiny.quality.compare import compare, paired_interval, report_table


@pytest.fixture(scope="module")
def results():
    return {k: oracle.evaluate(Baseline(k, 40), 40, tasks=("extend",), name=k, workers=1)
            for k in ("constant_velocity_bounce", "constant_velocity", "repeat_last")}


def test_identical_results_are_the_same(results):
    r = results["constant_velocity"]
    rep = compare(r, r)
    assert rep["verdict"] == "same or better" and rep["worse"] == []
    assert all(m["diff"] == 0 for m in rep["metrics"]) and rep["fidelity"]["extend"]["psnr"] == float("inf")


def test_a_worse_forecaster_is_flagged(results):
    rep = compare(results["constant_velocity_bounce"], results["repeat_last"])
    assert rep["verdict"] == "worse" and {"extend.psnr", "extend.centroid_error", "extend.iou"} <= set(rep["worse"])
    better = compare(results["repeat_last"], results["constant_velocity_bounce"])
    assert better["verdict"] == "same or better"
    assert "WORSE" in report_table(rep) and "fidelity extend" in report_table(rep)


def test_interval_covers_the_difference():
    rng = np.random.default_rng(0)
    ref = rng.random(200)
    cand = ref - 0.1 + rng.normal(0, 0.05, 200)
    d, lo, hi = paired_interval(ref, cand, "t2v.adherent")
    assert lo < -0.1 < hi and lo < d < hi and hi - lo < 0.03  # pairing removes the clip-to-clip spread


def test_results_of_other_clips_are_refused(results):
    other = oracle.evaluate(Baseline("repeat_last", 8), 8, tasks=("extend",), workers=1)
    with pytest.raises(ConfigError, match="same clips"):
        compare(results["repeat_last"], other)
