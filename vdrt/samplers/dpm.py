"""DPM-Solver++(2M) in flow sigmas (data prediction, multistep, midpoint).

Mirrors diffusers `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
solver_order=2, solver_type="midpoint", prediction_type="flow_prediction",
use_flow_sigmas=True, flow_shift=shift, lower_order_final=True,
final_sigmas_type="zero", euler_at_final=False, thresholding=False)`.

With alpha = 1 - sigma and lambda = log(alpha / sigma), h = lambda(i+1) - lambda(i),
the x0 prediction m_i = x - sigma_i * v, and D1 = (m_i - m_{i-1}) * h / h_prev:

    x' = (sigma' / sigma) x - alpha' (e^-h - 1) (m_i + D1 / 2)

The first step and the last step (down to sigma 0) are first order (DDIM);
the last step returns m_i exactly.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from vdrt.samplers.base import Sampler, SamplerConfig
from vdrt.samplers.schedules import dpm_schedule, log_snr


@dataclasses.dataclass(frozen=True)
class DPMConfig(SamplerConfig):
    pass


class DPMSolver2M(Sampler):
    name = "dpm++2m"
    Config = DPMConfig

    def _schedule(self, n: int):
        return dpm_schedule(n, self.config.shift, self.config.num_train_timesteps)

    def _reset(self) -> None:
        self._prev_x0: torch.Tensor | None = None  # m_{i-1}

    def _step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        s, s_next = self._s[i], self._s[i + 1]
        m = x - s * v  # x0 prediction
        prev, self._prev_x0 = self._prev_x0, m
        if s_next == 0:  # last step: first order down to sigma 0 gives m exactly
            return m
        h = log_snr(s_next) - log_snr(s)
        c = (1 - s_next) * math.expm1(-h)  # alpha' (e^-h - 1)
        if prev is None:
            return (s_next / s) * x - c * m
        r = (log_snr(s) - log_snr(self._s[i - 1])) / h
        d1 = (m - prev) / r
        return (s_next / s) * x - c * m - 0.5 * c * d1
