"""Samplers solve a flow ODE with a known solution (Gaussian data), higher order ones better.

For x0 ~ N(mu, s^2), the exact velocity is v(x, t) = (x - E[x0 | x_t = x]) / t and the
probability-flow ODE carries x_t = (1 - t) mu + sqrt((1 - t)^2 s^2 + t^2) z to mu + s z.
"""
import math

import pytest
import torch

import vdrt.samplers as S

MU, SD = 0.7, 0.4


def velocity(x, t):
    t = t.double()[:, None] / 1000  # (B,) -> (B, 1) sigma
    var = (1 - t) ** 2 * SD**2 + t**2
    x0 = MU + (1 - t) * SD**2 / var * (x - (1 - t) * MU)
    return (x - x0) / t


def solve_error(name: str, n: int) -> float:
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = S.get(name, shift=1.0)
    s.timesteps(n)
    s0 = s.sigma(0)
    x = (1 - s0) * MU + math.sqrt((1 - s0) ** 2 * SD**2 + s0**2) * z  # exact x at sigma(0)
    out = S.sample(lambda x, t, i: velocity(x, t), x, s, n, progress=False)
    return ((out - (MU + SD * z)).abs().max()).item()


@pytest.mark.parametrize("name", ["euler", "unipc", "dpm++2m"])
def test_error_shrinks_with_steps(name):
    e10, e40 = solve_error(name, 10), solve_error(name, 40)
    assert e40 < e10 / 2, (e10, e40)  # the final step to sigma 0 is first order for all three
    assert e40 < 0.06


def test_multistep_beats_euler():
    e = {n: solve_error(n, 10) for n in ["euler", "unipc", "dpm++2m"]}
    assert e["unipc"] < e["euler"] / 3 and e["dpm++2m"] < e["euler"] / 3, e
