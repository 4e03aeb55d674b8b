"""FewStep: exact with a perfect x0 predictor; re-noising is seeded."""
import pytest
import torch

import vdrt.samplers as S
from vdrt.errors import ConfigError


def _perfect(x0, sampler):
    """A model that knows x0: v = (x - x0) / sigma."""
    return lambda x, t, i: (x - x0) / sampler.sigma(i)


def _x0():
    return torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.mark.parametrize("ts", [None, [1000, 750, 500, 250], [999, 600, 300]])
def test_perfect_predictor_returns_x0(ts):
    x0 = _x0()
    s = S.get("fewstep", timesteps=ts, generator=0)
    n = 4 if ts is None else len(ts)
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = S.sample(_perfect(x0, s), x, s, n, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-12, rtol=0)


def _trace(generator):
    x0, seen = _x0(), []
    s = S.get("fewstep", generator=generator)
    x = torch.ones_like(x0) * 0.5
    S.sample(_perfect(x0, s), x, s, 4, progress=False, on_step_end=lambda i, x: seen.append(x.clone()))
    return seen


def test_renoising_is_seeded():
    a, b, c = _trace(7), _trace(7), _trace(8)
    for xa, xb in zip(a, b):
        torch.testing.assert_close(xa, xb, atol=0, rtol=0)
    assert (a[0] - c[0]).abs().max() > 0.1  # another seed, another intermediate
    torch.testing.assert_close(a[-1], c[-1], atol=1e-12, rtol=0)  # same clean result


def test_renoise_has_the_right_noise_level():
    s = S.get("fewstep", generator=0)
    s.timesteps(4)  # sigmas 1, .75, .5, .25, 0
    x = torch.full((1, 200_000), 0.25, dtype=torch.float64)
    y = s.step(x, x.clone(), 0)  # x0 = x - 1.0 * v = 0, so y = 0.75 * eps
    assert abs(y.std().item() - 0.75) < 0.01 and abs(y.mean().item()) < 0.01


def test_step_count_must_match_given_timesteps():
    s = S.get("fewstep", timesteps=[1000, 500])
    with pytest.raises(ConfigError, match="2 timesteps"):
        s.timesteps(3)


@pytest.mark.parametrize("ts", [[500, 750], [1000, 0], [1200, 500], [], ["a"]])
def test_bad_timesteps_rejected(ts):
    with pytest.raises(ConfigError):
        S.get("fewstep", timesteps=ts).timesteps(max(len(ts), 1))
