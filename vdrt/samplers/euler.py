"""Flow-matching Euler: x <- x + (sigma(i+1) - sigma(i)) * v.

Mirrors diffusers `FlowMatchEulerDiscreteScheduler(shift=shift,
num_train_timesteps=1000)` (use_dynamic_shifting=False, no karras/exponential/beta
sigmas, no shift_terminal, deterministic). With `mu` set it mirrors
`FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True,
time_shift_type="exponential").set_timesteps(n, mu=mu)` instead, and `shift` is unused.
"""
from __future__ import annotations

import dataclasses

import torch

from vdrt.samplers.base import Sampler, SamplerConfig
from vdrt.samplers.schedules import euler_schedule


@dataclasses.dataclass(frozen=True)
class EulerConfig(SamplerConfig):
    mu: float | None = None  # dynamic (resolution-dependent) shifting; None = static `shift`


class FlowEuler(Sampler):
    name = "euler"
    Config = EulerConfig

    def _schedule(self, n: int):
        c = self.config
        return euler_schedule(n, c.shift, c.num_train_timesteps, c.mu)

    def _step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        return x + (self._s[i + 1] - self._s[i]) * v
