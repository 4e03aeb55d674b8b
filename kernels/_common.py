"""Small helpers the kernel files share: interpreter detection and custom-op definition."""
from __future__ import annotations

import os
from typing import Callable

import torch


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (Triton's CPU interpreter, used by the CPU tests)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def device_ok(*tensors: torch.Tensor) -> bool:
    """CUDA tensors, or CPU tensors while the interpreter is on (checked at call time)."""
    dev = tensors[0].device
    if any(t.device != dev for t in tensors):
        return False
    return dev.type == "cuda" or (dev.type == "cpu" and interpreting())


def define_op(qualname: str, fn: Callable, fake: Callable):
    """`vdrt::name` as a triton_op (torch.compile/export/AOTI compile the kernel in).

    Under the interpreter the kernel cannot be traced (its launches are plain Python), so
    there the op is an opaque custom_op with `fake` as its meta implementation.
    """
    if interpreting():
        op = torch.library.custom_op(qualname, fn, mutates_args=())
        op.register_fake(fake)
        return op
    return torch.library.triton_op(qualname, fn, mutates_args=())
