"""A generic sampling loop: one model call and one sampler step per timestep.

    x = sample(lambda x, t, i: den(x, t, ctx), noise, vdrt.samplers.get("unipc"), 30)

`model_fn(x, t, i) -> v` gets the latents, the model timestep as a float32 (B,)
tensor on x's device, and the step index. After each step the latents are checked
for NaN/Inf with one reduction (one device sync per step, negligible next to a
denoiser call) and `vdrt.errors.SamplingError` names the step.
"""
from __future__ import annotations

from typing import Callable

import torch

from vdrt.errors import SamplingError
from vdrt.samplers.base import Sampler

ModelFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def sample(
    model_fn: ModelFn,
    x: torch.Tensor,
    sampler: Sampler,
    num_steps: int,
    start: int = 0,
    callback: Callable[[int, torch.Tensor], torch.Tensor | None] | None = None,
    check_finite: bool = True,
    progress: bool = True,
) -> torch.Tensor:
    """Run steps start..num_steps-1 from latents x at sigma(start); returns the final latents.

    `callback(i, x)` runs after step i; if it returns a tensor, that replaces x
    (e.g. masked latent replacement for conditioning). For SDEdit, take `start`
    from `sampler.start_index(num_steps, strength)` and pass
    `sampler.add_noise(x0, noise, start)` as x (after `sampler.timesteps`).
    """
    from tqdm.auto import tqdm

    ts = sampler.timesteps(num_steps).to(x.device)  # (N,)
    if not 0 <= start < num_steps:
        raise SamplingError(f"start index {start} is outside 0..{num_steps - 1}")
    for i in tqdm(range(start, num_steps), desc=sampler.name, disable=not progress, leave=False):
        v = model_fn(x, ts[i].expand(x.shape[0]), i)  # (B, ...) velocity
        x = sampler.step(x, v, i)
        if check_finite:
            _check_finite(x, sampler, i)
        if callback is not None:
            y = callback(i, x)
            x = x if y is None else y
    return x


def _check_finite(x: torch.Tensor, sampler: Sampler, i: int) -> None:
    if bool(torch.isfinite(x).all()):
        return
    n = sampler.num_steps
    t = sampler.sigma(i) * sampler.config.num_train_timesteps
    raise SamplingError(
        f"NaN/Inf appeared in the latents at step {i}/{n} (0-based; timestep {t:.1f}, sigma {sampler.sigma(i):.4f}, "
        f"sampler {sampler.name}); try fp32 / a smaller guidance scale / another sampler or shift"
    )
