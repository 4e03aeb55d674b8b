"""Shared by the step-cache tests: tiny seeded models and a CFG sampling run through the one loop."""
from __future__ import annotations

import functools

import torch

from vdrt import models
from vdrt.samplers import CFGModel, Guidance, get, sample


@functools.lru_cache(maxsize=None)
def model_and_inputs(name: str):
    """A tiny model (random, seeded) with its modulations perturbed, a latent of its kind and a text context."""
    torch.manual_seed(0)
    m = models.build_model(models.config_from_name(name)).eval().requires_grad_(False)
    c = m.config
    shape = (1, c.in_channels, 5, 16, 16) if c.in_channels == 3 else (1, c.in_channels, 3, 8, 8)
    g = torch.Generator().manual_seed(1)
    return m, torch.randn(shape, generator=g), torch.randn(1, 6, c.text_dim, generator=g)


def run(name: str, hooks=(), steps: int = 8, guidance: float = 5.0) -> torch.Tensor:
    m, noise, ctx = model_and_inputs(name)
    model = CFGModel(m, ctx, None, Guidance(guidance))
    with torch.no_grad():
        return sample(model, noise.clone(), get("unipc", shift=3.0), steps, hooks=list(hooks), progress=False)
