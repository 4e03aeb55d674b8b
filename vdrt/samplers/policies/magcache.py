"""MagCache (Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache").

Signal: the magnitude ratio of the stack's residual between consecutive steps,
gamma_i = mean over tokens |r_i| / |r_{i-1}| (|.| the L2 norm over D), which is close to 1 and
falls slowly, then fast in the last steps, nearly the same for every prompt: so it is calibrated
once per model. Per row, while the residual is reused, the error estimate is accumulated:

    ratio *= gamma_i;  err += |1 - ratio|;  k += 1
    err < threshold and k <= max_skips  ->  reuse the residual
    else                                ->  run the blocks, ratio = 1, err = 0, k = 0

The first `retention` fraction of the steps always runs (MagCache's 20%). gamma comes from the
model's calibration ("magcache": {"ratios": [gamma_0 = 1, gamma_1, ...], "num_steps": N}); for
another step count, gamma at the nearest calibrated position is raised to N_cal / N (a step of
another size). Without a calibration gamma is estimated online, per row, from the last two steps
that ran (a warning says so).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch

from vdrt.models.stepcache import Stack
from vdrt.samplers.policies.caching import CachePolicy

log = logging.getLogger(__name__)


def magnitude(residual: torch.Tensor) -> float:
    """(L, D) -> the mean over tokens of the L2 norm over D."""
    return float(residual.norm(dim=-1).mean())


@dataclass
class MagCache(CachePolicy):
    max_skips: int = 2  # MagCache's K: consecutive reuses at most
    retention: float = 0.2  # fraction of the first steps that always run
    name: ClassVar[str] = "magcache"

    def __post_init__(self):
        super().__post_init__()
        cal = (self.calibration or {}).get("magcache", {})
        self.ratios, self.calibrated_steps = cal.get("ratios"), cal.get("num_steps")
        if self.ratios is None:
            log.warning("magcache: no calibration for this model: estimating the magnitude ratio online from the "
                        "last two steps run (run `vdrt calibrate MODEL` to calibrate it)")

    def gamma(self, i: int, row: dict) -> float | None:
        """The residual magnitude ratio expected at step i (None: unknown yet)."""
        if self.ratios is None:
            return row.get("gamma")
        n, m = self.num_steps, len(self.ratios)
        j = round(i * (m - 1) / max(n - 1, 1))
        return float(self.ratios[j]) ** ((self.calibrated_steps or m) / n)

    def decide(self, stack: Stack):
        i = self.step.index
        warm = i < max(1, round(self.retention * self.num_steps))
        skip = [not warm and self.cached(r) and self._accumulate(row, self.gamma(i, row))
                for r, row in enumerate(self.rows)]
        before = [row.get("residual") for row in self.rows]
        out = self.finish(stack, stack.hidden, skip)
        for row, s, old in zip(self.rows, skip, before):
            if not s:
                self._ran_at(row, i, old)
        return out

    def _accumulate(self, row: dict, gamma: float | None) -> bool:
        """Add step i's estimated error; True to reuse, else reset (the row runs)."""
        if gamma is None:
            return False
        row["ratio"] = row.get("ratio", 1.0) * gamma
        row["err"] = row.get("err", 0.0) + abs(1.0 - row["ratio"])
        row["k"] = row.get("k", 0) + 1
        if row["err"] < self.threshold and row["k"] <= self.max_skips:
            return True
        row["ratio"], row["err"], row["k"] = 1.0, 0.0, 0
        return False

    def _ran_at(self, row: dict, i: int, old: torch.Tensor | None) -> None:
        """A row ran at step i: reset its accumulators, and (online) update its gamma per step."""
        row["ratio"], row["err"], row["k"] = 1.0, 0.0, 0
        mag = magnitude(row["residual"])
        if old is not None and "at" in row and row.get("mag", 0) > 0:
            row["gamma"] = (mag / row["mag"]) ** (1.0 / (i - row["at"]))
        row["mag"], row["at"] = mag, i
