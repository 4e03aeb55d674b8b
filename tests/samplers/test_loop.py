"""The generic loop: NaN detection naming the step, callbacks, progress off."""
import pytest
import torch

import vdrt.samplers as S
from vdrt.errors import SamplingError


def _x():
    return torch.randn(2, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_raises_naming_the_step(bad):
    def model(x, t, i):
        v = torch.randn_like(x)
        if i == 3:
            v[0, 5] = bad
        return v

    with pytest.raises(SamplingError, match=r"NaN/Inf appeared in the latents at step 3/6.*fp32"):
        S.sample(model, _x(), S.get("unipc"), 6, progress=False)


def test_check_finite_off_lets_nan_through():
    out = S.sample(lambda x, t, i: torch.full_like(x, float("nan")), _x(), S.get("euler"), 3,
                   check_finite=False, progress=False)
    assert torch.isnan(out).all()


def test_model_gets_batched_timesteps_and_callback_can_replace():
    seen, s = [], S.get("dpm++2m", shift=2.0)

    def model(x, t, i):
        seen.append((i, t.clone()))
        return torch.zeros_like(x)

    out = S.sample(model, _x(), s, 5, start=2, callback=lambda i, x: x + 1 if i == 4 else None, progress=False)
    ts = s.timesteps(5)
    assert [i for i, _ in seen] == [2, 3, 4]
    for i, t in seen:
        assert t.shape == (2,) and torch.all(t == ts[i])
    # v = 0 is no flow: every step keeps x, and the callback adds 1 after the last one
    torch.testing.assert_close(out, _x() + 1)


def test_bad_start():
    with pytest.raises(SamplingError, match="start"):
        S.sample(lambda x, t, i: x, _x(), S.get("euler"), 4, start=4, progress=False)


def test_progress_bar_can_be_disabled(capsys):
    S.sample(lambda x, t, i: x, _x(), S.get("euler"), 3, progress=False)
    assert capsys.readouterr().err == ""
    S.sample(lambda x, t, i: x, _x(), S.get("euler"), 3, progress=True)
    assert "euler" in capsys.readouterr().err
