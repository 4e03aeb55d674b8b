"""Classifier-free guidance with the two branches batched into one denoiser call.

    g = Guidance(scale=5.0, end=0.8)
    if g.active(i, n):
        x2, t2, ctx2, cond2 = batch_for_cfg(x, t, ctx, neg_ctx, **cond)  # batch 2B: cond, then uncond
        v = cfg_combine(den(x2, t2, ctx2, **cond2), g.scale)
    else:
        v = den(x, t, ctx, **cond)

Mirrors diffusers' Wan pipeline (noise_uncond + scale * (noise_pred - noise_uncond),
CFG only when guidance_scale > 1), except that both branches share one call.
"""
from __future__ import annotations

import dataclasses

import torch

from vdrt.errors import ConfigError, SamplingError


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


def batch_for_cfg(x, t, context, negative_context, **cond):
    """Stack inputs for one CFG call: returns (x2, t2, context2, cond2), batch 2B, cond first.

    x (B, ...) -> (2B, ...); t (B,) -> (2B,) (a 0-dim t is left as is);
    context and negative_context (B, L, D) -> (2B, L, D); every tensor in **cond
    is repeated (it conditions both branches); None and non-tensors pass through.
    """
    if context.shape != negative_context.shape:
        raise ConfigError(
            f"context {tuple(context.shape)} and negative_context {tuple(negative_context.shape)} differ; "
            "encode both prompts padded to the same length"
        )
    t2 = t if t.ndim == 0 else torch.cat([t, t])
    cond2 = {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}
    return torch.cat([x, x]), t2, torch.cat([context, negative_context.to(context.dtype)]), cond2
