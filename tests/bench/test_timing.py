"""vdrt.bench.timing: warm-up apart, a number of calls or a duration, percentiles as numpy computes them."""
import time

import numpy as np
import pytest
import torch

from vdrt.bench.timing import Timing, measure, quantile, summary


def counter(sleep_ms=(0.0,)):
    calls = []

    def fn():
        time.sleep(sleep_ms[len(calls) % len(sleep_ms)] / 1000)
        calls.append(1)
        return len(calls)
    return fn, calls


def test_warmup_apart_then_iterations():
    fn, calls = counter()
    res, out = measure(fn, Timing(warmup=3, iterations=5, percentiles=(50, 99)), torch.device("cpu"))
    assert len(calls) == 8 and out == 8 and res["iterations"] == 5
    assert res["first_ms"] is not None and {"ms", "p50_ms", "p99_ms", "mean_ms", "min_ms"} <= set(res)
    res, _ = measure(fn, Timing(warmup=0, iterations=1), torch.device("cpu"))
    assert res["first_ms"] is None and res["iterations"] == 1


def test_duration_runs_until_the_time_is_spent():
    fn, calls = counter((5.0,))
    t0 = time.perf_counter()
    res, _ = measure(fn, Timing(warmup=0, iterations=None, duration=0.05), torch.device("cpu"))
    assert 0.05 <= time.perf_counter() - t0 < 0.5
    assert 3 <= res["iterations"] <= 12 and res["ms"] >= 5.0


def test_percentiles_match_numpy():
    xs = [float(v) for v in np.random.default_rng(0).exponential(10, 37)]
    for q in (0.5, 0.9, 0.99, 1.0):
        assert quantile(xs, q) == pytest.approx(np.percentile(xs, 100 * q))
    s = summary(xs, (50, 90, 99.9))
    assert s["ms"] == pytest.approx(np.median(xs)) and s["p99.9_ms"] == pytest.approx(np.percentile(xs, 99.9))
    assert s["p50_ms"] == s["ms"] and s["min_ms"] == min(xs) and s["iterations"] == 37
