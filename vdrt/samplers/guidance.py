"""Classifier-free guidance: THE model function (`CFGModel`) that batches both branches into one call.

    model = CFGModel(den, ctx, neg_ctx, Guidance(5.0, end=0.8), cond={"cond": y}, device=dev, dtype=torch.bfloat16)
    x = vdrt.samplers.sample(model, noise, sampler, num_steps)

At a step where guidance is active the denoiser runs once on batch 2B ([cond; uncond]) and `cfg_combine` mixes the halves; elsewhere it runs once on batch B with the
positive context only. Mirrors diffusers' Wan pipeline (noise_uncond + scale * (noise_pred -
noise_uncond), CFG only when guidance_scale > 1), except that both branches share one call.
"""
from __future__ import annotations

import dataclasses

import torch

from vdrt.errors import ConfigError, SamplingError
from vdrt.samplers.loop import ModelFunction


@dataclasses.dataclass(frozen=True)
class Guidance:
    """CFG `scale`, applied for steps whose fraction i / N lies in [start, end).

    scale 1.0 equals the conditional branch alone, so it is never active (no
    uncond call, as diffusers' `guidance_scale > 1`); scale 0 gives uncond only.
    """

    scale: float
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self):
        if not self.scale >= 0:  # also rejects NaN
            raise ConfigError(f"guidance scale must be >= 0 (1 = no guidance), got {self.scale!r}")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ConfigError(f"guidance range needs 0 <= start <= end <= 1, got start={self.start}, end={self.end}")

    @property
    def enabled(self) -> bool:
        return self.scale != 1.0

    def active(self, i: int, n: int) -> bool:
        """Whether step i of n uses guidance (two branches) or a single cond call."""
        if n <= 0 or not 0 <= i < n:
            raise ConfigError(f"step {i} is outside 0..{n - 1}")
        return self.enabled and self.start <= i / n < self.end


def cfg_combine(out: torch.Tensor, scale: float) -> torch.Tensor:
    """(2B, ...) denoiser output, cond first then uncond -> (B, ...) uncond + scale * (cond - uncond).

    Computed and returned in float32 (or out's dtype if wider).
    """
    if out.shape[0] % 2:
        raise SamplingError(f"cfg_combine needs a doubled batch (cond first, uncond second), got {out.shape[0]}")
    out = out.to(torch.promote_types(out.dtype, torch.float32))
    cond, uncond = out.chunk(2)
    return uncond + scale * (cond - uncond)


class CFGModel(ModelFunction):
    """`model(x, t, i) -> v` over a denoiser `den(latents, timestep, context, **cond)`, guidance batched.

    context (B, L, D) and negative_context (B, L', D) (zeros when None; padded to one length), and
    every tensor of `cond` ((B, ...) inputs such as conditioning channels or image embeddings), are
    moved to `device` and cast to `dtype` (the denoiser's input dtype) once, here, and batched for
    both branches once. Each call casts x to `dtype`; the output is returned in float32.
    """

    def __init__(self, den, context: torch.Tensor, negative_context: torch.Tensor | None = None,
                 guidance: Guidance | float = 1.0, cond: dict | None = None, device=None,
                 dtype: torch.dtype = torch.float32):
        self.den, self.dtype, self.num_steps = den, dtype, None
        self.guidance = guidance if isinstance(guidance, Guidance) else Guidance(float(guidance))
        move = lambda v: v.to(device, dtype) if isinstance(v, torch.Tensor) else v  # noqa: E731
        self._one = {"context": move(context), **{k: move(v) for k, v in (cond or {}).items()}}
        self._two = self._one
        if self.guidance.enabled:
            neg = torch.zeros_like(context) if negative_context is None else negative_context
            pos, neg = same_length(context, neg)
            self._one["context"] = move(pos)
            self._two = {"context": torch.cat([self._one["context"], move(neg)]),
                         **{k: _twice(v) for k, v in self._one.items() if k != "context"}}

    def reset(self, num_steps: int) -> None:
        self.num_steps = num_steps

    def active(self, i: int) -> bool:
        if not self.guidance.enabled:
            return False
        if self.num_steps is None:
            raise SamplingError("CFGModel: call reset(num_steps) first (vdrt.samplers.sample does)")
        return self.guidance.active(i, self.num_steps)

    def inputs(self, i: int) -> dict:
        return self._two if self.active(i) else self._one

    def __call__(self, x: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        guided = self.active(i)
        inputs = dict(self._two if guided else self._one)
        context = inputs.pop("context")
        if guided:  # (B, ...) -> (2B, ...): cond rows first, then uncond
            x, t = torch.cat([x, x]), torch.cat([t, t])
        out = self.den(x.to(self.dtype), t, context, **inputs).float()
        return cfg_combine(out, self.guidance.scale) if guided else out


def same_length(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, D), (B, L', D) -> both (B, max(L, L'), D), zero-padded at the end."""
    n = max(a.shape[1], b.shape[1])
    pad = lambda z: torch.nn.functional.pad(z, (0, 0, 0, n - z.shape[1]))  # noqa: E731
    return pad(a), pad(b)


def _twice(v):
    return torch.cat([v, v]) if isinstance(v, torch.Tensor) else v
