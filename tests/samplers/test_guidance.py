"""CFG: combine math, active ranges, batching for one call."""
import pytest
import torch

from vdrt.errors import ConfigError, SamplingError
from vdrt.samplers.guidance import Guidance, batch_for_cfg, cfg_combine


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


def test_batch_for_cfg_shapes_and_order():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 8, 8, generator=g)  # (B, C, F, H, W)
    t = torch.tensor([900.0, 900.0])
    ctx, neg = torch.randn(2, 7, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    y = torch.randn(2, 5, 3, 8, 8, generator=g)
    x2, t2, c2, cond = batch_for_cfg(x, t, ctx, neg, y=y, clip=None, flag=True)
    assert x2.shape == (4, 4, 3, 8, 8) and t2.shape == (4,) and c2.shape == (4, 7, 16)
    torch.testing.assert_close(c2[:2], ctx)
    torch.testing.assert_close(c2[2:], neg)
    torch.testing.assert_close(x2[2:], x)
    assert cond["y"].shape == (4, 5, 3, 8, 8) and cond["clip"] is None and cond["flag"] is True
    assert batch_for_cfg(x, torch.tensor(500.0), ctx, neg)[1].shape == ()
    with pytest.raises(ConfigError, match="same length"):
        batch_for_cfg(x, t, ctx, neg[:, :5])


def test_one_batched_call_equals_two_calls():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(16, 16, generator=g)

    def den(x, t, ctx):  # (B, L, D) toy denoiser depending on all inputs
        return x @ w + ctx.mean(1, keepdim=True) * t[:, None, None] / 1000

    x, ctx, neg = (torch.randn(2, 6, 16, generator=g) for _ in range(3))
    t = torch.full((2,), 700.0)
    x2, t2, c2, cond = batch_for_cfg(x, t, ctx, neg)
    batched = cfg_combine(den(x2, t2, c2, **cond), 4.0)
    c, u = den(x, t, ctx), den(x, t, neg)
    torch.testing.assert_close(batched, u + 4.0 * (c - u))
