"""THE CUDA-graph cache: graphs per shape bucket, for every engine (torch, aoti, tensorrt) and the benchmarks.

`GraphCache(run)` wraps `run(list[Tensor]) -> Tensor`. Each distinct set of input shapes and
dtypes under one `vdrt.ops` state (a bucket) is warmed up on a side stream, captured once, and replayed afterwards; all
graphs share one memory pool. Inputs are copied into the graph's static buffers and the output
is cloned (unless `clone_output=False`), so a later replay cannot overwrite what the caller holds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from vdrt import ops

log = logging.getLogger(__name__)


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    inputs: list
    output: torch.Tensor


class GraphCache:
    def __init__(self, run: Callable[[list], torch.Tensor], warmup: int = 2, clone_output: bool = True):
        self.run, self.warmup, self.clone_output = run, warmup, clone_output
        self._graphs: dict = {}
        self._pool = None

    def __call__(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        # the ops state too: a graph captured under one op choice (e.g. dense attention) must not be
        # replayed under another (a per-step attention schedule switching to sparse)
        key = (tuple((tuple(t.shape), t.dtype) for t in inputs), ops.state())
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        g = self._graphs[key]
        for static, t in zip(g.inputs, inputs):
            static.copy_(t)
        g.graph.replay()
        return g.output.clone() if self.clone_output else g.output

    def __len__(self) -> int:
        return len(self._graphs)

    def _capture(self, inputs: list[torch.Tensor]) -> _Graph:
        static = [t.detach().clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.run(list(static))
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self.run(list(static))
        log.info("captured a CUDA graph for input shapes %s", [tuple(t.shape) for t in inputs])
        return _Graph(graph, static, out)
