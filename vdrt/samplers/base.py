"""The `Sampler` base class every flow-matching sampler implements.

Convention: x_t = (1 - sigma) * x0 + sigma * noise, the model predicts the flow
velocity v = noise - x0 at model timestep t = sigma * num_train_timesteps.

    sampler = vdrt.samplers.get("unipc", shift=5.0)
    ts = sampler.timesteps(num_steps)          # (N,) model timesteps; resets history
    for i in range(sampler.start_index(num_steps, strength), num_steps):
        v = model(x, ts[i].expand(B), ...)
        x = sampler.step(x, v, i)              # sigma(i) -> sigma(i + 1)

`step` computes in float32 (or x's dtype if wider) and returns x's dtype. Steps
must run in order from the first one taken (any start index, for SDEdit); call
`timesteps()` again to restart. Step coefficients are Python floats computed in
float64 from the float32 sigmas, so a step never syncs the device.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import torch

from vdrt.errors import ConfigError, SamplingError
from vdrt.samplers.schedules import check_num_steps

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Settings shared by every flow sampler."""

    shift: float = 5.0  # diffusers' shift / flow_shift; 5.0 is Wan's 720p default, 1.0 = none
    num_train_timesteps: int = 1000

    def __post_init__(self):
        if not self.shift > 0:
            raise ConfigError(f"shift must be > 0 (1.0 = no shift), got {self.shift!r}")
        if not isinstance(self.num_train_timesteps, int) or self.num_train_timesteps <= 0:
            raise ConfigError(f"num_train_timesteps must be a positive int, got {self.num_train_timesteps!r}")


class Sampler:
    """One small class per sampler: `timesteps(num_steps)` and `step(x, model_out, i)`.

    Subclasses set `name`, `Config` and implement `_schedule(n)` and `_step(x, v, i)`
    (and `_reset()` if they keep history). `generator` is a torch.Generator or an int
    seed, used by `noise_like` for samplers that re-noise; a seed makes every run
    started by `timesteps()` draw the same noise.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = SamplerConfig

    def __init__(self, config: SamplerConfig | None = None, *, generator=None, **overrides):
        self.config = _make_config(self.Config, config, overrides, self.name)
        if generator is not None and not isinstance(generator, (int, torch.Generator)):
            raise ConfigError(f"generator must be an int seed or a torch.Generator, got {type(generator).__name__}")
        self._generator_src = generator
        self.generator: torch.Generator | None = None
        self.sigmas: torch.Tensor | None = None  # (N+1,) float32, last 0; set by timesteps()
        self._ts: torch.Tensor | None = None
        self._next: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # --- schedule ---------------------------------------------------------------
    def timesteps(self, num_steps: int) -> torch.Tensor:
        """(N,) float32 model timesteps; sets `sigmas` (N+1,) and resets all run state."""
        n = check_num_steps(num_steps)
        sigmas, ts = self._schedule(n)
        self.sigmas, self._ts = sigmas, ts
        self._s = sigmas.double().tolist()
        self._next = None
        self.generator = _fresh_generator(self._generator_src)
        self._reset()
        log.debug("%s: %d steps, timesteps %.1f..%.1f", self.name, n, ts[0].item(), ts[-1].item())
        return ts.clone()

    @property
    def num_steps(self) -> int:
        self._require_schedule()
        return len(self._ts)

    def sigma(self, i: int) -> float:
        """sigma at step i (i == N gives the final 0)."""
        self._require_schedule()
        if not 0 <= i <= self.num_steps:
            raise SamplingError(f"step index {i} is outside 0..{self.num_steps}")
        return self._s[i]

    def start_index(self, num_steps: int, strength: float) -> int:
        """First step for SDEdit / v2v at `strength` in (0, 1] (1 = from pure noise).

        Mirrors diffusers' get_timesteps: the last int(num_steps * strength) steps run.
        """
        n = check_num_steps(num_steps)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise ConfigError(f"strength must be in (0, 1] (1 = start from pure noise), got {strength!r}")
        run = min(int(n * strength), n)
        if run == 0:
            raise ConfigError(f"strength {strength} with {n} steps runs no step; raise strength or num_steps")
        return n - run

    # --- noise ------------------------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, i: int) -> torch.Tensor:
        """x at the noise level of step i: (1 - s) * x0 + s * noise (i == N gives x0)."""
        s = self.sigma(i)
        cdt = torch.promote_types(x0.dtype, torch.float32)
        return ((1 - s) * x0.to(cdt) + s * noise.to(cdt)).to(x0.dtype)

    def noise_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like x, from `generator` (drawn on its device) when set."""
        g = self.generator
        if g is None:
            return torch.randn(x.shape, device=x.device, dtype=torch.float32).to(x.dtype)
        e = torch.randn(x.shape, generator=g, device=g.device, dtype=torch.float32)
        return e.to(device=x.device, dtype=x.dtype)

    # --- stepping ---------------------------------------------------------------
    def step(self, x: torch.Tensor, model_out: torch.Tensor, i: int) -> torch.Tensor:
        """Move x from sigma(i) to sigma(i + 1) given the model's velocity at step i."""
        self._check_order(i)
        if model_out.shape != x.shape:
            raise SamplingError(f"model output shape {tuple(model_out.shape)} != latents {tuple(x.shape)}")
        cdt = torch.promote_types(x.dtype, torch.float32)
        out = self._step(x.to(cdt), model_out.to(cdt), i)
        self._next = i + 1
        return out.to(x.dtype)

    def _check_order(self, i: int) -> None:
        self._require_schedule()
        if not 0 <= i < self.num_steps:
            raise SamplingError(f"step index {i} is outside 0..{self.num_steps - 1}")
        if self._next is not None and i != self._next:
            raise SamplingError(
                f"{self.name}: step {i} called after step {self._next - 1}; steps run in order, "
                "call timesteps(num_steps) to restart"
            )

    def _require_schedule(self) -> None:
        if self._ts is None:
            raise SamplingError(f"{self.name}: call timesteps(num_steps) before using the sampler")

    # --- for subclasses ---------------------------------------------------------
    def _schedule(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _reset(self) -> None:
        """Clear history buffers (multistep samplers override)."""


def _make_config(cls: type, config, overrides: dict, name: str):
    if config is not None:
        if overrides:
            raise ConfigError(f"{name}: pass either a config or keyword settings, not both ({sorted(overrides)})")
        if not isinstance(config, cls):
            raise ConfigError(f"{name}: config must be a {cls.__name__}, got {type(config).__name__}")
        return config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown settings {unknown}; known: {sorted(known)}")
    return cls(**overrides)


def _fresh_generator(src) -> torch.Generator | None:
    """An int seed gives a new CPU generator per run; a Generator is used as is."""
    if isinstance(src, int):
        return torch.Generator("cpu").manual_seed(src)
    return src
