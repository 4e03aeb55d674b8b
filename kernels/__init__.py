"""vdrt's Triton kernels (importable as vdrt.kernels), one file per kernel.

Importing this package registers each kernel with the op registry (`vdrt.ops`) where its
toolchain is present. Every kernel module exposes `register_ops()`; a module whose
toolchain (triton) is missing is skipped with one debug line, and the torch fallback
stays in use.
"""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

KERNEL_MODULES = ("temporal_attention", "adaln", "rope", "attention", "attention_int8", "quant")


def _register_all() -> None:
    try:
        import triton  # noqa: F401
    except ImportError:
        log.debug("triton is not installed; vdrt kernels are not registered (torch fallbacks in use)")
        return
    for name in KERNEL_MODULES:
        try:
            mod = importlib.import_module(f"vdrt.kernels.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"vdrt.kernels.{name}":
                raise
            continue
        mod.register_ops()


_register_all()
