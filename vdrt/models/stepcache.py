"""Step caching inside a denoiser: its transformer block stack handed to a cache policy, which may run or reuse it.

A cache policy (`vdrt.samplers.policies`: TeaCache, MagCache, first-block cache) makes itself the
active cache around one model call (`with stepcache.use(policy): den(...)`, from its step hook's
`wrap`). A model that cooperates (`WanModel`, `FactorizedModel`) then does not loop over its blocks
itself: it builds a `Stack` and returns `policy.run(stack)`, the stack's output hidden states. The
policy decides per batch row (CFG batches the two branches into one call) whether to run the blocks
or to add a residual it kept from an earlier step. `order` names the tokens' order (sparse attention
runs the stack in tile order): a policy never mixes residuals of two orders. The embeddings before the stack and the head
after it always run.

Without an active cache (the default: `active()` is None) the models run their block loop exactly as
before, so their normal path and everything traced from it (torch.export, AOTI, ONNX) is unchanged.
Compiled engines and CUDA-graph replays never read the active cache: the policies find that out
after the first call and refuse (`Stack` inside a capture is refused here).

    # (B, L, D): the stack's input hidden states; probe: what TeaCache compares between steps
    stack = Stack(hidden, num_blocks, run=lambda x, rows, start, stop: ..., probe=lambda: ...)
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

from vdrt.errors import ConfigError

# (x (b, L, D) of rows `rows` (None: every row), start, stop) -> hidden after blocks start..stop-1, (b, L, D)
RunBlocks = Callable[[torch.Tensor, "torch.Tensor | None", int, int], torch.Tensor]

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("vdrt_stepcache", default=None)


@dataclass(frozen=True)
class Stack:
    """A model's block stack for one call: its input, its size, and how to run any part of it on any rows."""

    hidden: torch.Tensor  # (B, L, D) input of block 0
    num_blocks: int
    _run: RunBlocks
    _probe: Callable[[], torch.Tensor]
    order: tuple | None = None  # the tokens' order: None raster, else sparse attention's tile layout (grid, tile)

    def run(self, x: torch.Tensor, rows: torch.Tensor | None = None, start: int = 0, stop: int | None = None):
        """Blocks start..stop-1 on `x`, the rows `rows` (a (b,) index into the batch; None: all) of the hidden states."""
        return self._run(x, rows, start, self.num_blocks if stop is None else stop)

    def probe(self) -> torch.Tensor:
        """(B, L, D) the timestep-modulated input of the first block (its attention input; TeaCache's signal)."""
        return self._probe()


class StackCache(Protocol):
    """What a model hands its stack to: `run(stack) -> (B, L, D)` hidden states after the whole stack."""

    def run(self, stack: Stack) -> torch.Tensor: ...


def active() -> StackCache | None:
    """The cache policy of the model call running now, or None (the models' normal path)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def use(cache: StackCache) -> Iterator[None]:
    """Make `cache` the active one for the calls inside (one model call, from a step hook's `wrap`)."""
    token = _ACTIVE.set(cache)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def run(cache: StackCache, stack: Stack) -> torch.Tensor:
    """`cache.run(stack)`, refused inside a CUDA-graph capture (a replay would freeze one step's decision)."""
    if stack.hidden.is_cuda and torch.cuda.is_current_stream_capturing():
        raise ConfigError("step caching cannot run inside a CUDA graph (the replay would repeat one step's "
                          "decision); drop --cuda-graphs or the cache policy")
    return cache.run(stack)


def rows_of(t: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    """The rows `rows` of a per-row input (B, ...) (None stays None; rows None: all of them)."""
    return t if t is None or rows is None else t[rows]
