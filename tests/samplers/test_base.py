"""Registry, config validation, bad input, add_noise, start_index, step ordering."""
import dataclasses

import pytest
import torch

import vdrt.samplers as S
from vdrt.errors import ConfigError, SamplingError

ALL = ["euler", "unipc", "dpm++2m", "fewstep"]


def test_registry_names_and_classes():
    assert S.names() == ALL
    kinds = {n: type(S.get(n)) for n in ALL}
    assert kinds == {"euler": S.FlowEuler, "unipc": S.UniPC, "dpm++2m": S.DPMSolver2M, "fewstep": S.FewStep}


def test_unknown_sampler_lists_names():
    with pytest.raises(ConfigError, match=r"unknown sampler 'ddim'.*euler.*unipc.*dpm\+\+2m.*fewstep"):
        S.get("ddim")


def test_config_is_frozen_and_validated():
    s = S.get("unipc", shift=3.0)
    assert s.config == S.UniPCConfig(shift=3.0) and S.get("euler").config.shift == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.config.shift = 1.0
    with pytest.raises(ConfigError, match="unknown settings"):
        S.get("euler", shfit=3.0)
    with pytest.raises(ConfigError, match="shift"):
        S.get("dpm++2m", shift=0.0)
    with pytest.raises(ConfigError, match="generator"):
        S.get("fewstep", generator="seed")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [0, -3, 2.5, True, None])
def test_bad_num_steps(name, n):
    with pytest.raises(ConfigError, match="num_steps"):
        S.get(name).timesteps(n)


@pytest.mark.parametrize("strength", [0.0, -0.5, 1.01, float("nan"), "0.5"])
def test_bad_strength(strength):
    with pytest.raises(ConfigError, match="strength"):
        S.get("euler").start_index(10, strength)


def test_start_index_mirrors_diffusers_get_timesteps():
    s = S.get("unipc")
    assert [s.start_index(10, k) for k in (1.0, 0.75, 0.7, 0.3, 0.1)] == [0, 3, 3, 7, 9]
    with pytest.raises(ConfigError, match="runs no step"):
        s.start_index(4, 0.2)
    with pytest.raises(ConfigError, match="num_steps"):
        s.start_index(0, 0.5)


@pytest.mark.parametrize("name", ALL)
def test_add_noise_levels(name):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    s = S.get(name)
    n = 4
    s.timesteps(n)
    for i in range(n + 1):
        sig = s.sigma(i)
        torch.testing.assert_close(s.add_noise(x0, noise, i), (1 - sig) * x0 + sig * noise)
    torch.testing.assert_close(s.add_noise(x0, noise, n), x0, atol=0, rtol=0)
    assert s.add_noise(x0.double(), noise.double(), 1).dtype == torch.float64


def test_use_before_timesteps_and_out_of_order_steps():
    s = S.get("unipc")
    x = torch.randn(1, 4)
    with pytest.raises(SamplingError, match="timesteps"):
        s.step(x, x, 0)
    s.timesteps(5)
    s.step(x, x, 1)  # any start index (SDEdit)
    with pytest.raises(SamplingError, match="in order"):
        s.step(x, x, 3)
    with pytest.raises(SamplingError, match="outside"):
        s.step(x, x, 5)
    with pytest.raises(SamplingError, match="shape"):
        s.step(x, x[:, :2], 2)
    s.timesteps(5)
    s.step(x, x, 0)  # restart is fine


@pytest.mark.parametrize("name", ALL)
def test_step_keeps_dtype_and_computes_in_fp32(name):
    g = torch.Generator().manual_seed(1)
    x, v = torch.randn(2, 64, generator=g), torch.randn(2, 64, generator=g)
    a, b = S.get(name, generator=0), S.get(name, generator=0)
    a.timesteps(4)
    b.timesteps(4)
    ya, yb = a.step(x.bfloat16(), v.bfloat16(), 0), b.step(x.bfloat16().float(), v.bfloat16().float(), 0)
    assert ya.dtype == torch.bfloat16
    torch.testing.assert_close(ya, yb.bfloat16(), atol=0, rtol=0)  # one rounding, at the end


def test_euler_step_is_the_euler_update():
    s = S.get("euler", shift=3.0)
    s.timesteps(6)
    g = torch.Generator().manual_seed(2)
    x, v = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(s.step(x, v, 0), x + (s.sigma(1) - s.sigma(0)) * v)
