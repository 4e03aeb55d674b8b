"""The AOTInductor engine: `model.pt2` loaded with `torch._inductor.aoti_load_package`.

Calls are checked against the manifest's profile (an EngineError names the dim and its range)
before they reach the compiled code, whose own guards would only abort. With
`cuda_graphs=True` on a CUDA device the package is loaded single-threaded (required for
capture) and every shape bucket is captured once and replayed (vdrt.engines.graphs).

Before the package is loaded, `aoti_preload.guard` handles the lent GPU image's libstdc++
quirk (see that module and docs/engine-format.md); `ensure_preload` is re-exported here.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vdrt.engines.aoti_preload import ensure_preload, guard  # noqa: F401  (public: vdrt.engines.aoti.ensure_preload)
from vdrt.engines.base import CompiledEngine
from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

ARTIFACT = "model.pt2"


class AOTIEngine(CompiledEngine):
    def __init__(self, path, manifest: dict, device: torch.device, cuda_graphs: bool = False):
        super().__init__(path, manifest, device)
        if cuda_graphs and self.device.type != "cuda":
            raise ConfigError("cuda_graphs=True needs a CUDA device; this engine runs on " + str(self.device))
        index = (self.device.index or 0) if self.device.type == "cuda" else -1
        package = Path(path) / ARTIFACT
        guard(package, index)
        from torch._inductor import aoti_load_package

        self.model = aoti_load_package(str(package), run_single_threaded=cuda_graphs, device_index=index)
        boxed = getattr(getattr(self.model, "loader", None), "boxed_run", None)
        self._run = (lambda xs: boxed(xs)[0]) if boxed else (lambda xs: self.model(*xs))
        self.graphs = None
        if cuda_graphs:
            from vdrt.engines.graphs import GraphCache

            self.graphs = GraphCache(self._run)

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.graphs is not None:
            return self.graphs(inputs)
        return self._run(list(inputs))


def load(path, manifest: dict, device: torch.device, cuda_graphs: bool = False, **unused) -> AOTIEngine:
    if unused:
        log.debug("aoti engine ignores options %s", sorted(unused))
    return AOTIEngine(path, manifest, device, cuda_graphs=cuda_graphs)
