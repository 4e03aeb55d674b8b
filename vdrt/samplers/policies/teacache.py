"""TeaCache (Liu et al. 2024, "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model").

Signal: the timestep-modulated input of the first block (its attention input, `Stack.probe()`),
which moves with both the latents and the timestep. Per row and per step, the relative L1 change
of that input since the previous step, rescaled by a polynomial fitted per model (the change of
the stack's output it predicts), is accumulated:

    acc += max(0, poly(mean|p_i - p_{i-1}| / mean|p_{i-1}|))
    acc < threshold  ->  reuse the residual (the stack is skipped)
    else             ->  run the blocks, acc = 0

The first and the last step always run (as TeaCache). The polynomial comes from the model's
calibration (`vdrt calibrate MODEL`: "teacache": {"coefficients": [highest power first], "range": the
inputs it was fitted on, which clamp the input}); without
one the identity (poly(x) = x) is used, with a warning: thresholds then mean "accumulated relative
change of the modulated input".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from vdrt.models.stepcache import Stack
from vdrt.samplers.policies.caching import CachePolicy, previous

log = logging.getLogger(__name__)

IDENTITY = (1.0, 0.0)  # poly(x) = x: the documented default without a calibration


@dataclass
class TeaCache(CachePolicy):
    name: ClassVar[str] = "teacache"

    def __post_init__(self):
        super().__post_init__()
        fitted = (self.calibration or {}).get("teacache", {}).get("coefficients")
        if fitted is None:
            log.warning("teacache: no calibration for this model: using poly(x) = x (run `vdrt calibrate MODEL` "
                        "to fit its polynomial)")
        self.coefficients = tuple(float(c) for c in (fitted or IDENTITY))
        lo, hi = (self.calibration or {}).get("teacache", {}).get("range") or (0.0, float("inf"))
        self.range = (float(lo), float(hi))

    def rescale(self, rel: float) -> float:
        """poly(rel) by Horner's rule; rel clamped to the fitted range (a quartic explodes outside it), the result
        at 0 (a fitted polynomial may dip below 0 near 0)."""
        rel, acc = min(max(rel, self.range[0]), self.range[1]), 0.0
        for c in self.coefficients:
            acc = acc * rel + c
        return max(0.0, acc)

    def decide(self, stack: Stack):
        probe = stack.probe()  # (B, L, D)
        edge = self.step.index in (0, self.num_steps - 1)
        skip = []
        for row, rel in zip(self.rows, previous(self.rows, "probe", probe)):
            go = rel is not None and not edge and "residual" in row
            row["acc"] = row.get("acc", 0.0) + self.rescale(rel) if go else 0.0
            skip.append(go and row["acc"] < self.threshold)
            if not skip[-1]:
                row["acc"] = 0.0
        for row, p in zip(self.rows, probe):
            row["probe"] = p
        return self.finish(stack, stack.hidden, skip)
