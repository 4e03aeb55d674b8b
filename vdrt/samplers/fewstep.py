"""Few-step sampler for step-distilled models (consistency / DMD-style multistep).

At each given timestep the model's velocity gives the clean estimate
x0 = x - sigma * v; every step but the last re-noises it to the next sigma with
fresh Gaussian noise, x = (1 - sigma') * x0 + sigma' * eps, and the last step
returns x0. This is the sampling loop of DMD2 / CausVid / Self-Forcing style
distilled Wan models (e.g. timesteps [1000, 750, 500, 250], optionally warped by
a shift as in their `warp_denoising_step`); diffusers has no scheduler for it
(FlowMatchEulerDiscreteScheduler(stochastic_sampling=True) given these sigmas is
the closest). Noise comes from the sampler's generator: an int seed makes every
run started by `timesteps()` draw the same noise.
"""
from __future__ import annotations

import dataclasses

import torch

from vdrt.errors import ConfigError
from vdrt.samplers.base import Sampler, SamplerConfig
from vdrt.samplers.schedules import given_schedule


@dataclasses.dataclass(frozen=True)
class FewStepConfig(SamplerConfig):
    shift: float = 1.0  # applied to the given timesteps (1.0 = use them as they are)
    timesteps: tuple[float, ...] | None = None  # model timesteps; None = N evenly spaced from T

    def __post_init__(self):
        super().__post_init__()
        if self.timesteps is None:
            return
        try:
            ts = tuple(float(t) for t in self.timesteps)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"fewstep timesteps must be a list of numbers, got {self.timesteps!r}") from e
        object.__setattr__(self, "timesteps", ts)


class FewStep(Sampler):
    name = "fewstep"
    Config = FewStepConfig

    def _schedule(self, n: int):
        c = self.config
        T = c.num_train_timesteps
        ts = c.timesteps
        if ts is None:
            ts = [T * (1 - k / n) for k in range(n)]  # 4 steps -> 1000, 750, 500, 250
        elif len(ts) != n:
            raise ConfigError(f"fewstep: num_steps={n} but {len(ts)} timesteps were given ({list(ts)})")
        return given_schedule(ts, c.shift, T)

    def _step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        x0 = x - self._s[i] * v
        s_next = self._s[i + 1]
        if s_next == 0:
            return x0
        return (1 - s_next) * x0 + s_next * self.noise_like(x0)
