"""Step caching: what TeaCache, MagCache and first-block cache share (each lives in its own file beside this one).

A `CachePolicy` is a step hook. Its `wrap(step)` makes it the active `vdrt.models.stepcache` cache
for that step's model call; a cooperating model (`WanModel`, `FactorizedModel`) hands it its block
stack, and the policy decides row by row (CFG runs both branches in one call: cond rows first, then
uncond; each row keeps its own state) whether to run the blocks or to reuse the residual it kept:

    out[row] = hidden[row] + residual[row]     # residual = stack output - stack input, from the
                                               # last step at which this row ran the blocks

The embeddings before the stack and the head after it always run, at the current timestep. A
policy never skips the first step of a row (nothing is cached yet); at threshold 0 it never skips,
and the output is bit-identical to running without it. Rows that appear mid-run (a guidance range
switching CFG on) have no state and run, and so do all rows when the tokens' order changes (a
per-step attention schedule switching to sparse attention's tile order). Residuals are kept in float32.

`stats` counts row-steps run and skipped (`skipped_fraction`). A policy that was never handed a
stack during a call (a compiled engine, or a CUDA-graph replay) refuses at that step's `observe`.

    pipe.hooks.append(TeaCache(0.2, calibration=...))     # or vdrt.samplers.policies.cachespec.build
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from vdrt.errors import ConfigError
from vdrt.models import stepcache
from vdrt.samplers.loop import Step, StepHook

log = logging.getLogger(__name__)


@dataclass
class CachePolicy(StepHook):
    """Base of the step-cache policies: per-row state, residual reuse, statistics. Subclasses define `decide`."""

    threshold: float
    calibration: dict | None = None  # the model's "cache_calibration" (see calibration.py); None: defaults
    name: ClassVar[str] = "cache"
    max_threshold: ClassVar[float] = 1.0
    rows: list = field(default_factory=list, init=False, repr=False)  # per batch row: a dict of state
    stats: dict = field(default_factory=lambda: {"run": 0, "skipped": 0}, init=False)

    def __post_init__(self):
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= self.max_threshold:
            raise ConfigError(f"{self.name} threshold must be a number in [0, {self.max_threshold}], got {t!r}")
        self.threshold = float(t)
        self.num_steps, self.step, self._ran, self._order = 0, None, True, None

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.threshold:g}"

    @property
    def skipped_fraction(self) -> float:
        total = self.stats["run"] + self.stats["skipped"]
        return self.stats["skipped"] / total if total else 0.0

    # ---------------------------------------------------------------- the step hook

    def reset(self, num_steps: int) -> None:
        self.num_steps, self.rows, self.step, self._order = num_steps, [], None, None
        self.stats = {"run": 0, "skipped": 0}

    def wrap(self, step: Step):
        other = stepcache.active()
        if other is not None and other is not self:
            raise ConfigError(f"two step-cache policies in one loop ({getattr(other, 'name', other)} and {self.name}); "
                              "use one")
        self.step, self._ran = step, False
        return stepcache.use(self)

    def observe(self, step: Step, output: torch.Tensor) -> None:
        if not self._ran:
            raise ConfigError(f"--cache {self.name}: the model did not hand its block stack to the policy (a "
                              "compiled engine or a CUDA-graph replay); step caching needs an eager vdrt model "
                              "(the torch backend, without --cuda-graphs)")
        if step.index == self.num_steps - 1:
            log.info("%s: %d of %d row-steps reused the cached residual (%.0f%%)", self.spec, self.stats["skipped"],
                     self.stats["run"] + self.stats["skipped"], 100 * self.skipped_fraction)

    # ---------------------------------------------------------------- the stack

    def run(self, stack: stepcache.Stack) -> torch.Tensor:
        """(B, L, D) hidden states after the stack: blocks run for some rows, residuals reused for the others."""
        self._ran = True
        if stack.order != self._order:  # tokens reordered (an attention schedule switched to sparse): start over
            self.rows, self._order = [], stack.order
        b = stack.hidden.shape[0]
        self.rows = self.rows[:b] + [{} for _ in range(b - len(self.rows))]
        return self.decide(stack)

    def decide(self, stack: stepcache.Stack) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, stack: stepcache.Stack, x: torch.Tensor, skip: list[bool], start: int = 0) -> torch.Tensor:
        """x (B, L, D): hidden states at block `start`. Rows marked in `skip`: x + their kept residual; the
        others run blocks start.. and keep out - x as their residual."""
        run = [i for i, s in enumerate(skip) if not s]
        out = stack.run(x, None, start) if len(run) == len(skip) else _merge(stack, x, run, self.rows, start)
        for i in run:
            self.rows[i]["residual"] = out[i].float() - x[i].float()  # (L, D)
        self.stats["run"] += len(run)
        self.stats["skipped"] += len(skip) - len(run)
        return out

    def cached(self, i: int) -> bool:
        """Whether row i has a residual to reuse."""
        return "residual" in self.rows[i]


def _merge(stack, x: torch.Tensor, run: list[int], rows: list[dict], start: int) -> torch.Tensor:
    """Rows `run` through the blocks, the others as x + residual."""
    out = torch.empty_like(x)
    skipped = [i for i in range(x.shape[0]) if i not in run]
    residual = torch.stack([rows[i]["residual"] for i in skipped])  # (s, L, D) fp32
    out[skipped] = (x[skipped].float() + residual).to(x.dtype)
    if run:
        idx = torch.tensor(run, device=x.device)
        out[idx] = stack.run(x[idx], idx, start)
    return out


def rel_l1(now: torch.Tensor, before: torch.Tensor) -> list[float]:
    """Per row: mean |now - before| / mean |before|, (B, ...) x2 -> B floats (one device sync)."""
    dims = tuple(range(1, now.dim()))
    num = (now.float() - before.float()).abs().mean(dim=dims)
    den = before.float().abs().mean(dim=dims).clamp_min(1e-30)
    return (num / den).tolist()


def previous(rows: list[dict], key: str, now: torch.Tensor) -> list[float | None]:
    """rel_l1 of each row's `now` against its kept `key` tensor (None where a row has none)."""
    have = [i for i, r in enumerate(rows) if key in r]
    rels = rel_l1(now[have], torch.stack([rows[i][key] for i in have])) if have else []
    out: list[float | None] = [None] * len(rows)
    for i, r in zip(have, rels):
        out[i] = r if math.isfinite(r) else None
    return out
