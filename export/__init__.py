"""vdrt.export: the build pipeline (AOTInductor, ONNX, TensorRT), its manifest writer and build cache.

The public entry is `vdrt.export.build(module, backend, out, precision, shapes, example=None, cache=True)`,
which returns the loaded engine; see `vdrt.export.build` (the module) and docs/engine-format.md.
The generic diffusers path is `vdrt.export.diffusers.build_diffusers(...)`.
"""
from __future__ import annotations

from vdrt.export.build import build  # noqa: F401  (the function shadows the submodule's name on purpose)

__all__ = ["build"]
