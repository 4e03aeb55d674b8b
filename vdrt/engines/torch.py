"""The torch engine: the eager module, optionally replayed through CUDA graphs per shape bucket.

Engine protocol (DESIGN.md): `__call__(latents, timestep, context, **cond) -> prediction`,
`.manifest`, `.device`. With `cuda_graphs=True` on a CUDA device, each distinct set of input
shapes/dtypes (a bucket) is captured once after a warm-up and replayed afterwards; all graphs
share one memory pool. Inputs are copied into the graph's static buffers, and the output is
cloned so a later replay cannot overwrite what the caller holds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from vdrt import ops
from vdrt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class _Graph:
    graph: "torch.cuda.CUDAGraph"
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


@dataclass
class TorchEngine:
    module: torch.nn.Module
    cuda_graphs: bool = False
    warmup: int = 2
    _graphs: dict = field(default_factory=dict, repr=False)
    _pool: object = field(default=None, repr=False)

    def __post_init__(self):
        if self.cuda_graphs and self.device.type != "cuda":
            raise ConfigError("cuda_graphs=True needs the module on a CUDA device; move it with .to('cuda') first")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def config(self):
        return self.module.config

    @property
    def manifest(self) -> dict:
        return {"backend": "torch", "model_config": self.config.to_dict(), "precision": str(self.dtype).split(".")[-1],
                "cuda_graphs": self.cuda_graphs}

    @torch.inference_mode()
    def __call__(self, latents, timestep, context, **cond):
        if not self.cuda_graphs:
            return self.module(latents, timestep, context, **cond)
        inputs = {"latents": latents, "timestep": timestep, "context": context,
                  **{k: v for k, v in cond.items() if v is not None}}
        key = (tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(inputs.items())), ops.state())
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        g = self._graphs[key]
        for k, v in inputs.items():
            g.inputs[k].copy_(v)
        g.graph.replay()
        return g.output.clone()

    def _capture(self, inputs: dict) -> _Graph:
        static = {k: v.detach().clone() for k, v in inputs.items()}
        run = lambda: self.module(static["latents"], static["timestep"], static["context"],  # noqa: E731
                                  **{k: v for k, v in static.items() if k not in ("latents", "timestep", "context")})
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                run()
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = run()
        log.info("captured a CUDA graph for shapes %s", {k: tuple(v.shape) for k, v in inputs.items()})
        return _Graph(graph, static, out)

    def num_graphs(self) -> int:
        return len(self._graphs)
