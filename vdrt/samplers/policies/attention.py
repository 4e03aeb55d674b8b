"""Per-step attention schedules: which attention implementation each sampling step runs.

Sliding Tile Attention keeps the first steps dense (the layout of a clip is decided early, and
sparse windows then only refine it); 8-bit attention is commonly kept out of the first and last
steps. A schedule is a step hook: its `wrap(step)` runs the model call under
`vdrt.ops.use(attention=...)` for that step.

    pipe.hooks.append(AttentionSchedule("vdrt-sparse-int8", sparse=SparseConfig(density=0.25)))
    # steps 0 .. ceil(0.3 N) - 1 dense (cuDNN), the rest sparse 8-bit

With CUDA graphs the graph cache keys its buckets by the ops state, so the dense and the sparse
steps replay their own graphs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vdrt import ops
from vdrt.errors import ConfigError
from vdrt.samplers.loop import Step, StepHook
from vdrt.sparse import SparseConfig

DENSE_FRACTION = 0.3  # STA keeps 15 of 50 steps dense


@dataclass
class AttentionSchedule(StepHook):
    """Run `choice` at every step except the first `dense_first` and the last `dense_last`, which run
    `dense` (default: the automatic choice). `dense_first=None`: ceil(0.3 N) for the sparse
    implementations (STA's 15 of 50), 0 otherwise."""

    choice: str
    dense_first: int | None = None
    dense_last: int = 0
    dense: str = "auto"
    sparse: SparseConfig | None = None

    def __post_init__(self):
        for name in (self.choice, self.dense):
            if name not in ops.available("attention") and name not in ops.ALIASES:
                raise ConfigError(f"unknown attention implementation {name!r}; choose one of {ops.available('attention')}")
        for name, n in (("dense_first", self.dense_first), ("dense_last", self.dense_last)):
            if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
                raise ConfigError(f"{name} must be a whole number of steps >= 0, got {n!r}")

    def first(self, num_steps: int) -> int:
        if self.dense_first is not None:
            return self.dense_first
        return math.ceil(DENSE_FRACTION * num_steps) if self.choice in ops.SPARSE_IMPLS else 0

    def choice_at(self, i: int, num_steps: int) -> str:
        """The attention implementation of step i of num_steps."""
        return self.choice if self.first(num_steps) <= i < num_steps - self.dense_last else self.dense

    def wrap(self, step: Step):
        return ops.use(attention=self.choice_at(step.index, step.num_steps), sparse=self.sparse)
