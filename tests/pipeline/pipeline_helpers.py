"""Helpers shared by runtime tests (a unique module name: test folders share one import namespace)."""
from __future__ import annotations


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
