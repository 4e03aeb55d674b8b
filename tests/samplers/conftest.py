"""Fixtures: diffusers schedulers configured as the vdrt samplers claim to mirror, a toy model."""
from __future__ import annotations

import pytest
import torch


def make_scheduler(name: str, shift: float, mu: float | None = None):
    d = pytest.importorskip("diffusers")
    if name == "euler":
        if mu is not None:
            return d.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
        return d.FlowMatchEulerDiscreteScheduler(shift=shift)
    if name == "unipc":
        return d.UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, solver_order=2,
            predict_x0=True, solver_type="bh2", lower_order_final=True, final_sigmas_type="zero",
            timestep_spacing="linspace", num_train_timesteps=1000,
        )
    if name == "dpm++2m":
        return d.DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", prediction_type="flow_prediction",
            use_flow_sigmas=True, flow_shift=shift, lower_order_final=True, final_sigmas_type="zero",
            num_train_timesteps=1000,
        )
    raise KeyError(name)


class ToyModel:
    """Fixed random velocity field: v = A x + (t / 1000) b + 0.3 sin(x), evaluated in float64."""

    def __init__(self, dim: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(dim, dim, generator=g, dtype=torch.float64) * (0.5 / dim**0.5)
        self.b = torch.randn(dim, generator=g, dtype=torch.float64)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # (B, D), (B,) -> (B, D)
        xd = x.double()
        v = xd @ self.A.T + (t.double() / 1000)[:, None] * self.b + 0.3 * torch.sin(xd)
        return v.to(x.dtype)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture
def diffusers_scheduler():
    """make_scheduler(name, shift[, mu]): the diffusers scheduler a vdrt sampler mirrors (skips without diffusers)."""
    return make_scheduler


@pytest.fixture
def toy_model():
    return ToyModel
