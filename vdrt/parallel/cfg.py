"""CFG parallelism: the batched [cond; uncond] denoiser call split over the CFG group.

The pipeline calls the engine once per step with batch 2 when guidance is on. With cfg degree 2,
CFG rank c runs batch row c only (its Ulysses group splits that row's tokens further), and the
two rows are all-gathered back in order, so every rank holds the same (2, ...) prediction and
steps the sampler identically. A call whose batch does not divide by the degree (batch 1: guidance
off, or outside the guidance range) runs whole on every CFG group: redundant, but still correct.
"""
from __future__ import annotations

import torch

from vdrt.parallel.comm import all_gather_cat


def split(x, batch: int, index: int, degree: int):
    """Row block `index` of `degree` along dim 0 for batched tensors; anything else is passed through."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[0] != batch:
        return x
    n = batch // degree
    return x[index * n:(index + 1) * n]


def cfg_parallel(fn, mesh, latents, timestep, context, **cond) -> torch.Tensor:
    """fn(latents, timestep, context, **cond) on this rank's CFG branch, gathered over the CFG group.

    (B, C, F, H, W), (B,), (B, T, text_dim), {name: (B, ...)} -> (B, C_out, F, H, W) on every rank.
    """
    b, degree = latents.shape[0], mesh.cfg_degree
    if degree == 1 or b % degree:
        return fn(latents, timestep, context, **cond)
    part = lambda x: split(x, b, mesh.cfg_rank, degree)  # noqa: E731
    out = fn(part(latents), part(timestep), part(context), **{k: part(v) for k, v in cond.items()})
    return all_gather_cat(out, mesh.cfg_group, dim=0)  # (B/degree, ...) -> (B, ...)
