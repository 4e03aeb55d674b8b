"""Shapes and helpers shared by the export tests (imported by conftest and the test modules)."""
from __future__ import annotations

import torch

SHAPES = {
    "wan-tiny": {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (4, 8, 16), "width": (4, 8, 16),
                 "text_len": (1, 16, 32)},
    "factorized-tiny": {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (8, 16, 32), "width": (8, 16, 32),
                        "text_len": (1, 16, 32)},
}
# two call shapes inside each profile: (batch, frames, height, width, text_len)
CALLS = {"wan-tiny": [(1, 3, 8, 8, 16), (2, 5, 12, 16, 7)],
         "factorized-tiny": [(1, 3, 16, 16, 16), (2, 5, 32, 24, 7)]}


def random_call(cfg, b, f, h, w, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, cfg.in_channels, f, h, w, generator=g), torch.rand(b, generator=g) * 1000,
            torch.randn(b, t, cfg.text_dim, generator=g))


def rel_err(a, b) -> float:
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return ((a - b).norm() / b.norm()).item()
