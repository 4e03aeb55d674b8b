"""The torch engine: the eager module, optionally replayed through CUDA graphs per shape bucket.

Implements the Engine protocol (vdrt.engines.base). With `cuda_graphs=True` on a CUDA device, the
calls go through THE graph cache (`vdrt.engines.graphs.GraphCache`): each bucket of input shapes
and dtypes is captured once after a warm-up and replayed afterwards.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TorchEngine:
    module: torch.nn.Module
    cuda_graphs: bool = False
    warmup: int = 2
    _graphs: dict = field(default_factory=dict, repr=False)  # cond names -> vdrt.engines.graphs.GraphCache

    def __post_init__(self):
        if self.cuda_graphs and self.device.type != "cuda":
            raise ConfigError("cuda_graphs=True needs the module on a CUDA device; move it with .to('cuda') first")
        self.reset_graphs()

    def reset_graphs(self) -> None:
        """Drop captured graphs (after the module moved); new ones are captured on the next calls."""
        self._graphs = {}

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
        from vdrt.engines.base import check_inputs

        check_inputs(latents, timestep, context, cond)
        if not isinstance(timestep, torch.Tensor):  # a number, as the compiled engines take it: (B,)
            timestep = torch.full((latents.shape[0],), float(timestep), device=latents.device)
        if not self.cuda_graphs:
            return self.module(latents, timestep, context, **cond)
        from vdrt.engines.graphs import GraphCache

        names = tuple(sorted(k for k, v in cond.items() if v is not None))
        if names not in self._graphs:
            self._graphs[names] = GraphCache(lambda xs: self._run_list(xs, names), warmup=self.warmup)
        return self._graphs[names]([latents, timestep, context, *(cond[k] for k in names)])

    def _run_list(self, inputs: list, names: tuple) -> torch.Tensor:
        latents, timestep, context, *rest = inputs
        return self.module(latents, timestep, context, **dict(zip(names, rest)))

    def num_graphs(self) -> int:
        return sum(len(g) for g in self._graphs.values())
