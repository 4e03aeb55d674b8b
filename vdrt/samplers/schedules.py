"""Flow-matching sigma schedules, bit-for-bit the ones diffusers builds.

Convention (all vdrt models): x_t = (1 - sigma) * x0 + sigma * noise, the model
predicts v = noise - x0, and its timestep input is t = sigma * num_train_timesteps.

Each function returns `(sigmas, timesteps)`: sigmas float32 (N+1,) ending in 0,
timesteps float32 (N,). The arithmetic (numpy float64 vs torch float32, where the
shift is applied, int truncation) follows each diffusers scheduler line by line,
so a Wan/diffusers pipeline and vdrt feed the model the very same timesteps:

- `euler_schedule`: FlowMatchEulerDiscreteScheduler.set_timesteps (shift, optional
  exponential dynamic shifting with `mu`). Its linspace runs between the already
  shifted sigma_max/sigma_min of the training grid and is shifted again; kept as is.
- `unipc_schedule`: UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift,
  timestep_spacing="linspace", final_sigmas_type="zero"): the first sigma is pulled
  1e-6 below 1 (so log(1 - sigma) stays finite); timesteps are int64-truncated.
- `dpm_schedule`: DPMSolverMultistepScheduler(use_flow_sigmas=True, flow_shift=shift,
  final_sigmas_type="zero"): starts at shift(0.999..); timesteps int64-truncated.
- `given_schedule`: explicit timesteps (step-distilled models), optionally shifted.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from vdrt.errors import ConfigError


def check_num_steps(num_steps) -> int:
    """Validate a step count: a positive int (bools rejected)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps <= 0:
        raise ConfigError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)


def shift_sigmas(sigmas, shift: float):
    """The flow shift: s -> shift * s / (1 + (shift - 1) * s); shift 1.0 is the identity."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def time_shift_exponential(mu: float, sigmas):
    """diffusers' dynamic (resolution-dependent) shift: e^mu / (e^mu + (1/s - 1))."""
    return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))


def _finish(sigmas: np.ndarray, timesteps) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) sigmas + (N,) timesteps -> float32 sigmas (N+1,) ending in 0, float32 timesteps (N,)."""
    s = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
    return s, torch.as_tensor(timesteps, dtype=torch.float32)


def euler_schedule(n: int, shift: float, num_train_timesteps: int = 1000, mu: float | None = None):
    """FlowMatchEulerDiscreteScheduler(shift=shift[, use_dynamic_shifting=True]).set_timesteps(n[, mu=mu])."""
    T = num_train_timesteps
    grid = torch.tensor([float(T), 1.0], dtype=torch.float32) / T  # training grid ends, as in __init__
    if mu is None:
        grid = shift_sigmas(grid, shift)
    sigma_max, sigma_min = grid[0].item(), grid[1].item()
    sig = np.linspace(sigma_max * T, sigma_min * T, n) / T
    sig = shift_sigmas(sig, shift) if mu is None else time_shift_exponential(mu, sig)
    s = torch.from_numpy(np.concatenate([sig, [0.0]])).to(torch.float32)
    return s, s[:-1] * T


def unipc_schedule(n: int, shift: float, num_train_timesteps: int = 1000):
    """UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift).set_timesteps(n)."""
    T = num_train_timesteps
    sig = shift_sigmas(np.linspace(1, 1 / T, n + 1)[:-1], shift)
    if abs(sig[0] - 1) < 1e-6:
        sig[0] -= 1e-6
    return _finish(sig, (sig * T).astype(np.int64))


def dpm_schedule(n: int, shift: float, num_train_timesteps: int = 1000):
    """DPMSolverMultistepScheduler(use_flow_sigmas=True, flow_shift=shift).set_timesteps(n)."""
    T = num_train_timesteps
    sig = 1.0 - np.linspace(1, 1 / T, n + 1)
    sig = np.flip(shift_sigmas(sig, shift))[:-1].copy()
    return _finish(sig, (sig * T).astype(np.int64))


def given_schedule(timesteps: Sequence[float], shift: float = 1.0, num_train_timesteps: int = 1000):
    """Explicit model timesteps (e.g. [1000, 750, 500, 250]) -> sigmas t/T, shifted when shift != 1."""
    T = num_train_timesteps
    t = np.asarray(timesteps, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ConfigError(f"timesteps must be a non-empty 1-D list of numbers, got {timesteps!r}")
    if np.any(t <= 0) or np.any(t > T) or np.any(np.diff(t) >= 0):
        raise ConfigError(f"timesteps must be strictly decreasing within (0, {T}], got {list(timesteps)}")
    sig = shift_sigmas(t / T, shift)
    s = torch.from_numpy(np.concatenate([sig, [0.0]])).to(torch.float32)
    return s, s[:-1] * T


def log_snr(sigma: float) -> float:
    """lambda = log(alpha / sigma) with alpha = 1 - sigma (flow sigmas): +inf at sigma 0, -inf at 1."""
    if sigma <= 0:
        return math.inf
    if sigma >= 1:
        return -math.inf
    return math.log(1 - sigma) - math.log(sigma)
