"""Shared fixtures for runtime tests: small, fast pipelines on random-weight presets."""
from __future__ import annotations

import pytest
import torch


class CountingEngine:
    """Wraps an engine, recording the batch size and extra inputs of every call."""

    def __init__(self, engine, poison_at: int | None = None):
        self.engine, self.calls, self.poison_at = engine, [], poison_at

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def __call__(self, latents, timestep, context, **cond):
        self.calls.append({"batch": latents.shape[0], "t": timestep.tolist(), "cond": sorted(cond)})
        out = self.engine(latents, timestep, context, **cond)
        if self.poison_at is not None and len(self.calls) > self.poison_at:
            out = out.clone()
            out.view(-1)[0] = float("nan")
        return out


@pytest.fixture(scope="session")
def tiny_pipe():
    import vdrt

    return vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu", dtype=torch.float32)


@pytest.fixture
def small():
    """A small generation size for factorized-tiny (patch 4)."""
    return dict(num_frames=5, height=32, width=32, num_steps=2, progress=False)
