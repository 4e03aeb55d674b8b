"""Full sampling loops on a fixed toy model match the diffusers scheduler loops."""
import pytest
import torch

import vdrt.samplers as S

B, D = 3, 48


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _diffusers_loop(sched, model, x, start=0):
    if start:
        sched.set_begin_index(start)
    for t in sched.timesteps[start:]:
        x = sched.step(model(x, t.expand(x.shape[0])), t, x).prev_sample
    return x


def _noise(dtype, seed=1):
    return torch.randn(B, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["euler", "unipc", "dpm++2m"])
@pytest.mark.parametrize("num_steps,shift", [(4, 1.0), (10, 3.0), (50, 5.0)])
def test_loop_matches_diffusers(name, num_steps, shift, dtype, diffusers_scheduler, toy_model):
    model, x = toy_model(D), _noise(dtype)
    sched = diffusers_scheduler(name, shift)
    sched.set_timesteps(num_steps)
    ref = _diffusers_loop(sched, model, x)
    out = S.sample(lambda x, t, i: model(x, t), x, S.get(name, shift=shift), num_steps, progress=False)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert _rel(out, ref) < 1e-5, _rel(out, ref)
    assert _rel(out, x) > 0.1  # it did move


@pytest.mark.parametrize("name", ["euler", "unipc", "dpm++2m"])
def test_sdedit_start_matches_diffusers(name, diffusers_scheduler, toy_model):
    n, shift = 12, 3.0
    model, x0, noise = toy_model(D), _noise(torch.float32, 2), _noise(torch.float32, 3)
    s = S.get(name, shift=shift)
    start = s.start_index(n, 0.6)
    assert start == n - int(n * 0.6)
    s.timesteps(n)
    x = s.add_noise(x0, noise, start)
    sched = diffusers_scheduler(name, shift)
    sched.set_timesteps(n)
    ref_x = (1 - sched.sigmas[start]) * x0 + sched.sigmas[start] * noise
    torch.testing.assert_close(x, ref_x, atol=1e-6, rtol=1e-6)
    ref = _diffusers_loop(sched, model, x, start)
    out = S.sample(lambda x, t, i: model(x, t), x, s, n, start=start, progress=False)
    assert _rel(out, ref) < 1e-5, _rel(out, ref)


@pytest.mark.parametrize("name", ["euler", "unipc", "dpm++2m"])
def test_rerun_after_timesteps_is_identical(name, toy_model):
    model, x = toy_model(D), _noise(torch.float32)
    s = S.get(name, shift=3.0)
    a = S.sample(lambda x, t, i: model(x, t), x, s, 8, progress=False)
    b = S.sample(lambda x, t, i: model(x, t), x, s, 8, progress=False)  # history must have been reset
    torch.testing.assert_close(a, b, atol=0, rtol=0)
