"""THE sampling loop: one model call and one sampler step per timestep, with step hooks.

    x = sample(model, noise, vdrt.samplers.get("unipc"), 30)                 # model(x, t, i) -> v
    x = sample(CFGModel(den, ctx, neg, Guidance(5.0), device=dev), noise, sampler, 30, hooks=[policy])

Everything that samples calls this function: `vdrt.Pipeline`, the quality oracle and distillation.
It takes a model function and latents and gives latents back; it knows nothing of prompts, media,
codecs or engines.

The model function
------------------
`model(x, t, i) -> v`: the latents x (B, C, F, H, W) at step i, the model timestep t as a float32
(B,) tensor on x's device, and the step index i; it returns the model output the sampler steps
with (the flow velocity, (B, C, F, H, W)), guidance already applied. Any callable works. A
`ModelFunction` subclass (e.g. `vdrt.samplers.guidance.CFGModel`) also gets `reset(num_steps)`
at the start of each run and reports its other inputs (context, cond ...) to hooks through
`inputs(i)`.

Step hooks (the contract step-caching policies and attention schedules build on)
--------------------------------------------------------------------------------
A hook is a `StepHook` (subclass it; every method has a no-op default). For a run of N steps:

1. `reset(num_steps)` runs once, before the first step, on every hook in order: forget what an
   earlier generation cached; N is known from here on.
2. At each step i the loop builds one `Step` (index, num_steps, timestep, latents, inputs: what
   hooks see; read-only by convention) and asks every hook in order `skip(step)`. The first hook
   that returns a tensor wins: that tensor is used as the model output of step i and the model is
   NOT called (step caching: TeaCache, MagCache, first-block cache). It must have the shape and
   meaning of a real output (guided velocity, (B, C, F, H, W)). Later hooks are not asked.
3. Otherwise the model is called once, inside every hook's `wrap(step)` context manager, entered
   in hook order (the first hook's context is outermost). This is where a per-step attention
   schedule puts `vdrt.ops.use(attention="vdrt-sparse")`, or a profiler its range.
4. After a real call, every hook's `observe(step, output)` sees the output (a cache policy keeps
   it, or the residual against `step.latents`). Skipped steps are not observed.

Then the sampler steps, the latents are checked for NaN/Inf (one reduction, one device sync per
step, negligible next to a denoiser call; `vdrt.errors.SamplingError` names the step), and
`on_step_end(i, x)` may return replacement latents (masked latent replacement for conditioning,
or a user's `callback_on_step_end`). Hooks never change the latents themselves.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, ContextManager, Mapping, Sequence

import torch

from vdrt.errors import SamplingError
from vdrt.samplers.base import Sampler

ModelFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


class ModelFunction:
    """A model function that wants the loop's lifecycle (see the module doc); `__call__(x, t, i) -> v`."""

    def reset(self, num_steps: int) -> None:
        """Called once at the start of each run."""

    def inputs(self, i: int) -> Mapping[str, torch.Tensor]:
        """The model's other inputs at step i (context, cond, ...), as hooks see them."""
        return {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Step:
    """What a hook sees at one step."""

    index: int  # 0-based step index i
    num_steps: int  # N
    timestep: torch.Tensor  # (B,) float32 model timestep on the latents' device
    latents: torch.Tensor  # (B, C, F, H, W) x at sigma(i), before this step's model call
    inputs: Mapping[str, torch.Tensor]  # the model function's other inputs at step i ({} for a plain callable)


class StepHook:
    """Base of step hooks (caching policies, attention schedules); override what you need."""

    def reset(self, num_steps: int) -> None:
        """Start of a generation of `num_steps` steps: drop any state from an earlier one."""

    def skip(self, step: Step) -> torch.Tensor | None:
        """A model output to use instead of calling the model at this step, or None to call it."""
        return None

    def wrap(self, step: Step) -> ContextManager:
        """A context manager the real model call of this step runs inside."""
        return contextlib.nullcontext()

    def observe(self, step: Step, output: torch.Tensor) -> None:
        """Each real model output (not the ones a `skip` supplied)."""


def sample(
    model: ModelFn,
    x: torch.Tensor,
    sampler: Sampler,
    num_steps: int,
    start: int = 0,
    hooks: Sequence[StepHook] = (),
    on_step_end: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
    check_finite: bool = True,
    progress: bool | dict = True,
) -> torch.Tensor:
    """Run steps start..num_steps-1 from latents x at sigma(start); returns the final latents.

    `on_step_end(i, x)` runs after step i (and its NaN check); a tensor it returns replaces x.
    For SDEdit, take `start` from `sampler.start_index(num_steps,
    strength)` and pass `sampler.add_noise(x0, noise, start)` as x (after `sampler.timesteps`).
    `progress`: show a tqdm bar (True / False), or a dict of tqdm options (`disable`, `desc`, ...).
    """
    ts = sampler.timesteps(num_steps).to(x.device)  # (N,)
    if not 0 <= start < num_steps:
        raise SamplingError(f"start index {start} is outside 0..{num_steps - 1}")
    _reset(model, hooks, num_steps)
    for i in _progress(range(start, num_steps), progress, sampler.name):
        v = model_call(model, hooks, _step(model, x, ts[i], i, num_steps))
        x = sampler.step(x, v, i)
        if check_finite:
            _check_finite(x, sampler, i)
        if on_step_end is not None:
            y = on_step_end(i, x)
            x = x if y is None else y
    return x


def model_call(model: ModelFn, hooks: Sequence[StepHook], step: Step) -> torch.Tensor:
    """One step's model output: a hook's `skip`, else the model called inside every hook's `wrap`."""
    for hook in hooks:
        out = hook.skip(step)
        if out is not None:
            return out
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook.wrap(step))
        out = model(step.latents, step.timestep, step.index)
    for hook in hooks:
        hook.observe(step, out)
    return out


def _reset(model, hooks: Sequence[StepHook], num_steps: int) -> None:
    if isinstance(model, ModelFunction):
        model.reset(num_steps)
    for hook in hooks:
        hook.reset(num_steps)


def _step(model, x: torch.Tensor, t: torch.Tensor, i: int, n: int) -> Step:
    inputs = model.inputs(i) if isinstance(model, ModelFunction) else {}
    return Step(i, n, t.expand(x.shape[0]), x, inputs)


def _progress(steps: range, progress: bool | dict, desc: str):
    from tqdm.auto import tqdm

    opts = dict(progress) if isinstance(progress, dict) else {"disable": not progress}
    return tqdm(steps, **{"desc": desc, "leave": False, **opts})


def _check_finite(x: torch.Tensor, sampler: Sampler, i: int) -> None:
    if bool(torch.isfinite(x).all()):
        return
    n = sampler.num_steps
    t = sampler.sigma(i) * sampler.config.num_train_timesteps
    raise SamplingError(
        f"NaN/Inf appeared in the latents at step {i + 1}/{n} (timestep {t:.1f}, sigma {sampler.sigma(i):.4f}, "
        f"sampler {sampler.name}); try --precision fp32, a smaller guidance scale, or another sampler or shift"
    )
