"""vdrt: a compiled inference runtime for video diffusion denoisers.

Heavy pieces import lazily so `import vdrt` stays cheap:

    pipe = vdrt.Pipeline.from_pretrained("vdrt-tiny")
    video = pipe(vdrt.GenerateRequest(prompt="a red circle bouncing", seed=0))
    den = vdrt.load_denoiser("wan-tiny")
    engine = vdrt.load_engine("engines/x")
"""
from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "Pipeline": ("vdrt.pipeline", "Pipeline"),
    "GenerateRequest": ("vdrt.request", "GenerateRequest"),
    "Video": ("vdrt.io", "Video"),
    "load_denoiser": ("vdrt.loader", "load_denoiser"),
    "load_engine": ("vdrt.engines", "load_engine"),
    "VdrtError": ("vdrt.errors", "VdrtError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in ("export", "kernels", "ops", "models", "samplers", "engines", "io"):
        return importlib.import_module(f"vdrt.{name}")
    raise AttributeError(f"module 'vdrt' has no attribute {name!r}")


__all__ = ["Pipeline", "GenerateRequest", "Video", "load_denoiser", "load_engine", "VdrtError", "__version__"]
