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

    with pytest.raises(SamplingError, match=r"NaN/Inf appeared in the latents at step 4/6 .*timestep .*fp32"):
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

    out = S.sample(model, _x(), s, 5, start=2, on_step_end=lambda i, x: x + 1 if i == 4 else None, progress=False)
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


# ---------------------------------------------------------------- step hooks


class Skipper(S.StepHook):
    """A step cache: reuse the last real output at the steps in `skip_at`."""

    def __init__(self, skip_at):
        self.skip_at, self.events, self.last = set(skip_at), [], None

    def reset(self, num_steps):
        self.events.append(("reset", num_steps))
        self.last = None

    def skip(self, step):
        return self.last if step.index in self.skip_at else None

    def observe(self, step, output):
        self.events.append(("observe", step.index, step.num_steps))
        self.last = output


def test_a_hook_can_skip_a_call_and_sees_real_outputs_only():
    calls = []

    def model(x, t, i):
        calls.append(i)
        return torch.full_like(x, float(i + 1))

    hook = Skipper(skip_at={2, 3})
    s = S.get("euler", shift=1.0)
    out = S.sample(model, _x(), s, 5, hooks=[hook], progress=False)
    assert calls == [0, 1, 4]
    assert hook.events == [("reset", 5), ("observe", 0, 5), ("observe", 1, 5), ("observe", 4, 5)]
    sig = s.sigmas.double()  # steps 2 and 3 used step 1's output (2.0)
    expect = _x().double() + sum((sig[i + 1] - sig[i]) * v for i, v in enumerate([1, 2, 2, 2, 5]))
    torch.testing.assert_close(out.double(), expect, rtol=1e-6, atol=1e-6)
    S.sample(model, _x(), s, 2, hooks=[hook], progress=False)
    assert hook.events[-3] == ("reset", 2)  # reset at the start of each generation


def test_a_hook_can_swap_an_op_per_step():
    from vdrt import ops

    class Schedule(S.StepHook):  # dense attention for the first half, another implementation after
        def wrap(self, step):
            return ops.use(attention="torch" if step.index < step.num_steps // 2 else "vdrt")

    seen, before = [], ops.get_choice("attention")
    S.sample(lambda x, t, i: seen.append(ops.get_choice("attention")) or torch.zeros_like(x), _x(), S.get("euler"),
             4, hooks=[Schedule()], progress=False)
    assert seen == ["torch", "torch", "vdrt", "vdrt"]
    assert ops.get_choice("attention") == before  # the choice is restored after each call


def test_hooks_see_step_timestep_latents_and_model_inputs():
    seen = []

    class Spy(S.StepHook):
        def skip(self, step):
            seen.append(step)

    ctx = torch.randn(1, 3, 16)
    model = S.CFGModel(lambda x, t, c: x * 0, ctx, None, S.Guidance(2.0, end=0.5))
    s = S.get("unipc")
    x = torch.randn(1, 16)
    S.sample(model, x, s, 4, hooks=[Spy()], progress=False)
    ts = s.timesteps(4)
    assert [st.index for st in seen] == [0, 1, 2, 3] and {st.num_steps for st in seen} == {4}
    assert all(torch.equal(st.timestep, ts[st.index].expand(1)) for st in seen)
    assert torch.equal(seen[0].latents, x)
    assert [st.inputs["context"].shape[0] for st in seen] == [2, 2, 1, 1]  # batched for CFG where it is active


def test_first_skipping_hook_wins_and_wrap_order():
    order = []

    class Tag(S.StepHook):
        def __init__(self, name, out=None):
            self.name, self.out = name, out

        def skip(self, step):
            order.append(("skip", self.name))
            return self.out

        def wrap(self, step):
            import contextlib

            @contextlib.contextmanager
            def cm():
                order.append(("enter", self.name))
                yield
                order.append(("exit", self.name))
            return cm()

    S.sample(lambda x, t, i: order.append("call") or x * 0, _x(), S.get("euler"), 1, hooks=[Tag("a"), Tag("b")],
             progress=False)
    assert order == [("skip", "a"), ("skip", "b"), ("enter", "a"), ("enter", "b"), "call", ("exit", "b"),
                     ("exit", "a")]
    order.clear()
    S.sample(lambda x, t, i: order.append("call") or x * 0, _x(), S.get("euler"), 1,
             hooks=[Tag("a", out=torch.zeros(2, 16)), Tag("b")], progress=False)
    assert order == [("skip", "a")]
