"""CFG: combine math, active ranges, batching for one call."""
import pytest
import torch

from vdrt.errors import ConfigError, SamplingError
from vdrt.samplers.guidance import CFGModel, Guidance, cfg_combine


def test_cfg_combine_math():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    out = cfg_combine(torch.cat([cond, uncond]), 5.0)
    torch.testing.assert_close(out, uncond + 5.0 * (cond - uncond))
    torch.testing.assert_close(cfg_combine(torch.cat([cond, uncond]), 1.0), cond)
    torch.testing.assert_close(cfg_combine(torch.cat([cond, uncond]), 0.0), uncond)
    assert cfg_combine(torch.cat([cond, uncond]).bfloat16(), 3.0).dtype == torch.float32
    with pytest.raises(SamplingError, match="doubled batch"):
        cfg_combine(torch.randn(3, 4), 2.0)


def test_active_ranges():
    g = Guidance(5.0, start=0.2, end=0.6)
    assert [g.active(i, 10) for i in range(10)] == [False, False, True, True, True, True, False, False, False, False]
    assert all(Guidance(5.0).active(i, 7) for i in range(7))
    assert not any(Guidance(1.0).active(i, 7) for i in range(7))  # scale 1 = cond only
    assert all(Guidance(0.0).active(i, 3) for i in range(3))
    with pytest.raises(ConfigError):
        Guidance(5.0).active(7, 7)


@pytest.mark.parametrize("kw", [dict(scale=-1.0), dict(scale=float("nan")), dict(scale=3.0, start=0.5, end=0.2),
                                dict(scale=3.0, end=1.5), dict(scale=3.0, start=-0.1)])
def test_bad_guidance(kw):
    with pytest.raises(ConfigError):
        Guidance(**kw)


class Recorder:
    """A toy denoiser depending on every input; records what each call got."""

    def __init__(self, w):
        self.w, self.calls = w, []

    def __call__(self, x, t, ctx, y=None, clip=None, flag=None):
        self.calls.append(dict(x=x, t=t, ctx=ctx, y=y, clip=clip, flag=flag))
        out = x @ self.w + ctx.mean(1, keepdim=True) * t[:, None, None] / 1000
        return out if y is None else out + y.mean()


def test_cfg_model_batches_once_cond_first_and_moves_inputs_once():
    g = torch.Generator().manual_seed(1)
    x, ctx, neg, y = (torch.randn(2, 7, 16, generator=g) for _ in range(4))
    den = Recorder(torch.randn(16, 16, generator=g).double())
    m = CFGModel(den, ctx, neg, Guidance(3.0), cond={"y": y, "clip": None, "flag": True}, dtype=torch.float64)
    m.reset(4)
    assert m.inputs(0) is m.inputs(1)  # batched and cast once, not per step
    m(x, torch.full((2,), 900.0), 0)
    call = den.calls[0]
    assert call["x"].shape == (4, 7, 16) and call["t"].shape == (4,) and call["ctx"].shape == (4, 7, 16)
    assert call["x"].dtype == torch.float64 and call["y"].dtype == torch.float64 and call["t"].dtype == torch.float32
    torch.testing.assert_close(call["ctx"][:2], ctx.double())
    torch.testing.assert_close(call["ctx"][2:], neg.double())
    torch.testing.assert_close(call["x"][2:], x.double())
    assert call["y"].shape == (4, 7, 16) and call["clip"] is None and call["flag"] is True


def test_cfg_model_one_batched_call_equals_two_calls():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(16, 16, generator=g)
    den = Recorder(w)
    x, ctx, neg = (torch.randn(2, 6, 16, generator=g) for _ in range(3))
    t = torch.full((2,), 700.0)
    m = CFGModel(den, ctx, neg, 4.0)
    m.reset(1)
    batched = m(x, t, 0)
    c, u = den(x, t, ctx), den(x, t, neg)
    torch.testing.assert_close(batched, u + 4.0 * (c - u))
    assert len(den.calls) == 3  # one batched call, then the two reference calls


def test_cfg_model_range_scale_one_and_padding():
    g = torch.Generator().manual_seed(3)
    den = Recorder(torch.randn(16, 16, generator=g))
    ctx, neg = torch.randn(1, 6, 16, generator=g), torch.randn(1, 4, 16, generator=g)
    m = CFGModel(den, ctx, neg, Guidance(2.0, end=0.5))
    m.reset(4)
    x = torch.randn(1, 6, 16, generator=g)
    for i in range(4):
        m(x, torch.full((1,), 500.0), i)
    assert [c["x"].shape[0] for c in den.calls] == [2, 2, 1, 1]
    assert den.calls[0]["ctx"].shape == (2, 6, 16) and den.calls[0]["ctx"][1, 4:].abs().sum() == 0  # neg padded
    off = CFGModel(den, ctx, None, 1.0)
    off.reset(2)
    assert off(x, torch.full((1,), 500.0), 0).shape == (1, 6, 16) and den.calls[-1]["ctx"].shape == (1, 6, 16)
    with pytest.raises(SamplingError, match="reset"):
        CFGModel(den, ctx, neg, 2.0)(x, torch.full((1,), 500.0), 0)
