"""Step caching (TeaCache, MagCache, first-block cache) through the one loop, on Wan and factorized models.

Exactness at threshold 0 (bit-identical), a hook that skips, the skipped fraction growing with the
threshold, the reused residual against a manual recomputation, CFG's two rows kept apart, and the
refusal when the model does not cooperate.
"""
from __future__ import annotations

import pytest
import torch

from vdrt.errors import ConfigError
from vdrt.models import stepcache
from vdrt.samplers import CFGModel, Guidance, get, sample
from vdrt.samplers.policies.caching import CachePolicy
from vdrt.samplers.policies.fbcache import FirstBlockCache
from vdrt.samplers.policies.cachespec import parse
from cache_helpers import model_and_inputs, run

pytestmark = pytest.mark.usefixtures("one_thread")
FAMILIES = ("wan-tiny", "factorized-tiny")
POLICIES = ("teacache", "magcache", "fbcache")


class EveryOther(CachePolicy):
    """A test policy: rows in `rows_to_skip` reuse their residual at odd steps; the others always run."""

    name = "every-other"

    def __init__(self, rows_to_skip=(0, 1)):
        super().__init__(0.5)
        self.rows_to_skip = rows_to_skip

    def decide(self, stack):
        odd = self.step.index % 2 == 1
        skip = [odd and self.cached(i) and i in self.rows_to_skip for i in range(len(self.rows))]
        return self.finish(stack, stack.hidden, skip)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("policy", POLICIES)
def test_threshold_zero_never_skips_and_is_bit_identical(family, policy):
    ref = run(family)
    p = parse(f"{policy}:0").build()
    out = run(family, [p])
    assert p.stats == {"run": 2 * 8, "skipped": 0}  # CFG: 2 rows per step
    assert torch.equal(out, ref)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_hook_that_skips_changes_the_output_a_little(family):
    ref = run(family)
    p = EveryOther()
    out = run(family, [p])
    assert p.stats == {"run": 8, "skipped": 8} and p.skipped_fraction == 0.5
    err = ((out - ref).norm() / ref.norm()).item()
    assert 0 < err < 0.2  # an approximation, not a different clip


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("policy", POLICIES)
def test_skipped_fraction_grows_with_the_threshold(family, policy):
    fractions = []
    for t in (0.0, 0.02, 0.3, 1.0):
        p = parse(f"{policy}:{t}").build()
        run(family, [p], steps=10)
        fractions.append(p.skipped_fraction)
    assert fractions[0] == 0 and fractions[-1] > 0.3, fractions
    assert fractions == sorted(fractions), fractions


def stack_io(model, x, t, ctx):
    """(input hidden, output hidden) of the block stack for one call, with a recording cache."""
    seen = {}

    class Record:
        def run(self, stack):
            seen["in"] = stack.hidden
            seen["out"] = stack.run(stack.hidden)
            return seen["out"]
    with stepcache.use(Record()), torch.no_grad():
        model(x, t, ctx)
    return seen["in"], seen["out"]


@pytest.mark.parametrize("family", FAMILIES)
def test_reused_residual_equals_a_manual_recomputation(family):
    """Step 1 skipped: the model's output is its head on hidden(step 1) + (out - in)(step 0), computed by hand."""
    m, x0, ctx = model_and_inputs(family)
    x1 = x0 + 0.1 * torch.randn_like(x0)
    t0, t1 = torch.tensor([900.0]), torch.tensor([800.0])
    h_in0, h_out0 = stack_io(m, x0, t0, ctx)
    residual = h_out0.float() - h_in0.float()

    class Manual:  # the stack replaced by hidden + the step-0 residual
        def run(self, stack):
            return (stack.hidden.float() + residual).to(stack.hidden.dtype)
    with stepcache.use(Manual()), torch.no_grad():
        manual = m(x1, t1, ctx)

    p = EveryOther()
    p.reset(2)
    with torch.no_grad():
        for i, (x, t) in enumerate([(x0, t0), (x1, t1)]):
            with p.wrap(_step(i, x, t)):
                out = m(x, t, ctx)
    assert p.stats == {"run": 1, "skipped": 1}
    assert torch.equal(out, manual)
    with torch.no_grad():
        assert not torch.allclose(out, m(x1, t1, ctx), atol=1e-6)  # the skip did change something


@pytest.mark.parametrize("family", FAMILIES)
def test_cfg_rows_keep_their_own_state(family):
    """Row 1 (uncond) reuses its residual while row 0 (cond) runs: row 0 equals a full run of that row."""
    m, x0, ctx = model_and_inputs(family)
    two = lambda z: torch.cat([z, z])  # noqa: E731
    ctx2 = torch.cat([ctx, torch.zeros_like(ctx)])
    x1 = x0 + 0.1 * torch.randn_like(x0)
    p = EveryOther(rows_to_skip=(1,))
    p.reset(2)
    with torch.no_grad():
        for i, x in enumerate([x0, x1]):
            t = torch.full((2,), 900.0 - 100 * i)
            with p.wrap(_step(i, two(x), t)):
                out = m(two(x), t, ctx2)
        full = m(two(x1), t, ctx2)
    assert p.stats == {"run": 3, "skipped": 1}
    torch.testing.assert_close(out[0], full[0], rtol=1e-5, atol=1e-5)  # row 0 ran its blocks
    assert (out[1] - full[1]).abs().max() > 1e-4  # row 1 reused step 0's residual


def _step(i, x, t):
    from vdrt.samplers.loop import Step

    return Step(i, 2, t, x, {})


def test_policies_with_cfg_count_both_rows_and_a_guidance_range_adds_rows():
    """Guidance on for the first half only: 2 rows, then 1; the cond row's state carries over."""
    m, noise, ctx = model_and_inputs("wan-tiny")
    p = parse("teacache:0.3").build()
    model = CFGModel(m, ctx, None, Guidance(5.0, end=0.5))
    with torch.no_grad():
        sample(model, noise.clone(), get("euler", shift=3.0), 8, hooks=[p], progress=False)
    assert p.stats["run"] + p.stats["skipped"] == 4 * 2 + 4 * 1
    assert p.stats["skipped"] > 0


def test_a_model_that_does_not_cooperate_is_refused():
    """A plain callable (as a compiled engine) never hands over its stack: the first observe refuses."""
    p = parse("fbcache:0.1").build()
    with pytest.raises(ConfigError, match="eager vdrt model"):
        sample(lambda x, t, i: -x, torch.randn(1, 3, 2, 4, 4), get("euler"), 3, hooks=[p], progress=False)


def test_no_active_cache_outside_a_step():
    p = parse("fbcache:0.1").build()
    p.reset(1)
    x = torch.randn(1, 3, 2, 4, 4)
    with p.wrap(_step(0, x, torch.tensor([1.0]))):
        assert stepcache.active() is p
    assert stepcache.active() is None


def test_bad_thresholds_are_refused():
    from vdrt.samplers.policies.teacache import TeaCache

    for bad in (-0.1, 1.5, float("nan"), True, "0.1"):
        with pytest.raises(ConfigError, match="threshold"):
            TeaCache(bad)


def test_a_switch_to_sparse_tile_order_drops_the_cached_residuals():
    """Dense steps run the stack in raster order, sparse ones in tile order: the policy starts over at the switch
    (an always-skipping first-block cache then runs steps 0 and 2 only), and never adds a raster-order residual
    to tile-ordered tokens."""
    from vdrt.samplers.policies.attention import AttentionSchedule
    from vdrt.sparse import SparseConfig

    m, _, ctx = model_and_inputs("wan-tiny")
    noise = torch.randn(1, 16, 5, 16, 16, generator=torch.Generator().manual_seed(2))  # grid 5x8x8: tiles 5x3x4
    schedule = AttentionSchedule("vdrt-sparse", dense_first=2, sparse=SparseConfig(density=0.25))
    orders = []

    class Spy(FirstBlockCache):
        def run(self, stack):
            orders.append(stack.order)
            return super().run(stack)
    p = Spy(1.0)
    with torch.no_grad():
        sample(CFGModel(m, ctx, None, Guidance(1.0)), noise, get("euler", shift=3.0), 5, hooks=[schedule, p],
               progress=False)
    assert orders[:2] == [None, None] and orders[2:] == [((5, 8, 8), (5, 3, 4))] * 3
    assert p.stats == {"run": 2, "skipped": 3}  # steps 0 and 2 ran their blocks
