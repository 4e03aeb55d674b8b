"""Timesteps and sigmas are the ones diffusers' schedulers produce, for several (steps, shift)."""
import pytest
import torch

import vdrt.samplers as S

PAIRS = [(1, 5.0), (4, 1.0), (10, 3.0), (30, 8.0), (50, 5.0)]


@pytest.mark.parametrize("name", ["euler", "unipc", "dpm++2m"])
@pytest.mark.parametrize("num_steps,shift", PAIRS)
def test_schedule_matches_diffusers(name, num_steps, shift, diffusers_scheduler):
    ref = diffusers_scheduler(name, shift)
    ref.set_timesteps(num_steps)
    s = S.get(name, shift=shift)
    ts = s.timesteps(num_steps)
    assert ts.shape == (num_steps,) and ts.dtype == torch.float32
    assert s.sigmas.shape == (num_steps + 1,) and s.sigmas[-1].item() == 0.0
    torch.testing.assert_close(s.sigmas, ref.sigmas.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ts, ref.timesteps.float(), atol=1e-4, rtol=0)
    assert [s.sigma(i) for i in range(num_steps + 1)] == s.sigmas.double().tolist()


@pytest.mark.parametrize("mu", [0.5, 1.15])
def test_euler_dynamic_shift_matches_diffusers(mu, diffusers_scheduler):
    ref = diffusers_scheduler("euler", 1.0, mu=mu)
    ref.set_timesteps(20, mu=mu)
    s = S.get("euler", mu=mu)
    ts = s.timesteps(20)
    torch.testing.assert_close(s.sigmas, ref.sigmas.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(ts, ref.timesteps.float(), atol=1e-4, rtol=0)


def test_shift_moves_steps_towards_noise():
    lo, hi = S.get("unipc", shift=1.0), S.get("unipc", shift=5.0)
    lo.timesteps(10)
    hi.timesteps(10)
    assert torch.all(hi.sigmas[1:-1] > lo.sigmas[1:-1])
    assert torch.all(torch.diff(hi.sigmas) < 0)


def test_fewstep_given_and_default_timesteps():
    s = S.get("fewstep")
    torch.testing.assert_close(s.timesteps(4), torch.tensor([1000.0, 750.0, 500.0, 250.0]))
    torch.testing.assert_close(s.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    s = S.get("fewstep", timesteps=[999, 500, 100])
    torch.testing.assert_close(s.timesteps(3), torch.tensor([999.0, 500.0, 100.0]))
    w = S.get("fewstep", shift=5.0)  # warped: sigma -> 5s / (1 + 4s)
    w.timesteps(4)
    torch.testing.assert_close(w.sigmas, torch.tensor([1.0, 15 / 16, 5 / 6, 5 / 8, 0.0]))
