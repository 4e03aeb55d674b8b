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

KERNEL_MODULES = ("temporal_attention", "adaln", "rope", "attention", "attention_int8", "attention_sparse", "quant",
                  "gelu_quant", "attention_fused")


def _register_all() -> None:
    try:
        import triton  # noqa: F401
    except ImportError:
        log.debug("triton is not installed; vdrt kernels are not registered (torch fallbacks in use)")
        return
    for name in KERNEL_MODULES:
        try:
            mod = importlib.import_module(f"vdrt.kernels.{name}")
        except Exception as e:  # e.g. a Triton too old for a kernel's features: fall back, say so once
            log.warning("kernel module %s failed to import (%s: %s); its op keeps the torch fallback", name,
                        type(e).__name__, e)
            continue
        try:
            mod.register_ops()
        except Exception as e:  # a kernel that cannot register must not take the runtime down
            log.warning("kernel %s did not register (%s: %s); its op keeps the torch fallback", name,
                        type(e).__name__, e)


_register_all()
