"""How `vdrt bench` times a call: warm-up apart, then a number of calls or a duration, percentiles, peak memory.

    t = Timing(warmup=2, iterations=20, percentiles=(50, 90, 99))
    result, out = measure(lambda: engine(*inputs), t, device)
    result  # {"ms": median, "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "iterations", "first_ms", "peak_mem_gb"}

The first warm-up call is timed on its own (`first_ms`: compilation, autotuning, graph capture);
the other warm-up calls are not timed. Each timed call is synchronized (host wall clock around the
call and a device sync), as a user's step is. With `duration`, calls repeat until that many seconds
have passed (at least one call); `max_iterations` bounds a duration run.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from vdrt.errors import ConfigError


@dataclass(frozen=True)
class Timing:
    warmup: int = 1
    iterations: int | None = 10
    duration: float | None = None  # seconds; instead of `iterations`
    percentiles: tuple = (50.0, 90.0)
    max_iterations: int = 100_000

    def __post_init__(self):
        if self.iterations is not None and self.duration is not None:
            raise ConfigError("--iterations and --duration both given; pass one (a number of calls, or seconds)")
        if isinstance(self.warmup, bool) or self.warmup < 0:
            raise ConfigError(f"--warmup {self.warmup} must be a whole number >= 0")
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError(f"--iterations {self.iterations} must be >= 1")
        if self.duration is not None and not self.duration > 0:
            raise ConfigError(f"--duration {self.duration} must be a number of seconds > 0")
        if not self.percentiles or not all(0 < q <= 100 for q in self.percentiles):
            raise ConfigError(f"--percentiles {','.join(map(str, self.percentiles))}: each must lie in (0, 100]")

    def replace(self, **kw) -> "Timing":
        import dataclasses

        return dataclasses.replace(self, **kw)


def parse_percentiles(text: str | None) -> tuple:
    """'50,90,99' -> (50.0, 90.0, 99.0)."""
    if not text:
        return Timing.percentiles
    try:
        return tuple(float(q) for q in text.split(",") if q.strip())
    except ValueError:
        raise ConfigError(f"--percentiles {text!r}: give a comma list of numbers in (0, 100], e.g. 50,90,99") from None


def measure(fn: Callable, timing: Timing, device: torch.device) -> tuple[dict, object]:
    """Time `fn()` as `timing` says; returns (the result dict above, the last call's output)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        first, out = _warm(fn, timing.warmup, sync)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times, start = [], time.perf_counter()
        while _more(times, start, timing):
            t0 = time.perf_counter()
            out = fn()
            sync()
            times.append(1000 * (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return {**summary(times, timing.percentiles), "first_ms": first, "peak_mem_gb": peak}, out


def _warm(fn: Callable, warmup: int, sync) -> tuple[float | None, object]:
    first, out = None, None
    for k in range(warmup):
        t0 = time.perf_counter()
        out = fn()
        sync()
        if k == 0:
            first = 1000 * (time.perf_counter() - t0)
    return first, out


def _more(times: list, start: float, timing: Timing) -> bool:
    if timing.duration is None:
        return len(times) < (timing.iterations or 1)
    return not times or (time.perf_counter() - start < timing.duration and len(times) < timing.max_iterations)


def summary(times: list[float], percentiles=(50.0, 90.0)) -> dict:
    """ms: the median; p<q>_ms for each percentile; mean, min; the number of timed calls."""
    out = {"ms": statistics.median(times)}
    out.update({f"p{q:g}_ms": quantile(times, q / 100) for q in percentiles})
    return {**out, "mean_ms": statistics.fmean(times), "min_ms": min(times), "iterations": len(times)}


def quantile(xs: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
