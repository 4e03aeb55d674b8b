"""The AOTInductor engine: `model.pt2` loaded with `torch._inductor.aoti_load_package`.

Calls are checked against the manifest's profile (an EngineError names the dim and its range)
before they reach the compiled code, whose own guards would only abort. With
`cuda_graphs=True` on a CUDA device the package is loaded single-threaded (required for
capture) and every shape bucket is captured once and replayed (vdrt.engines.graphs).

Engines built with external weights (the default) carry `weights.safetensors`: after the
package is loaded, the tensors are read straight onto the engine's device and handed to the
compiled model with `load_constants` (user-managed: no second copy). A constant the package
asks for that the file lacks is an EngineError naming it.

Before the package is loaded, `aoti_preload.guard` handles the lent GPU image's libstdc++
quirk (see that module and docs/engine-format.md); `ensure_preload` is re-exported here.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from vdrt.engines.aoti_preload import ensure_preload, guard  # noqa: F401  (public: vdrt.engines.aoti.ensure_preload)
from vdrt.engines.base import CompiledEngine
from vdrt.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

ARTIFACT = "model.pt2"
WEIGHTS = "weights.safetensors"


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
        if WEIGHTS in manifest["artifacts"]:
            self._weights = load_weights(self.model, Path(path) / WEIGHTS, self.device)
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


def load_weights(model, path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """Read the constants the package asks for onto `device` and hand them over; returns them (kept alive)."""
    from safetensors import safe_open

    wanted = list(model.get_constant_fqns())
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        missing = sorted(set(wanted) - set(f.keys()))
        if missing:
            raise EngineError(f"{path} lacks {len(missing)} constant(s) the compiled package needs, e.g. "
                              f"{missing[:3]}; the engine directory is inconsistent, rebuild it")
        tensors = {k: f.get_tensor(k) for k in wanted}
    try:
        model.load_constants(tensors, check_full_update=True, user_managed=True)
    except TypeError:  # older torch: no user_managed keyword (the loader then copies)
        model.load_constants(tensors, check_full_update=True)
    return tensors


def load(path, manifest: dict, device: torch.device, cuda_graphs: bool = False, **unused) -> AOTIEngine:
    if unused:
        log.debug("aoti engine ignores options %s", sorted(unused))
    return AOTIEngine(path, manifest, device, cuda_graphs=cuda_graphs)
