"""Small helpers the kernel files share: interpreter detection, custom-op definition, casts."""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (Triton's CPU interpreter, used by the CPU tests)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def is_interpreted(kernel) -> bool:
    """True when `kernel` was decorated under the interpreter (it then runs on CPU tensors)."""
    return type(kernel).__name__ == "InterpretedFunction"


def device_ok(*tensors: torch.Tensor) -> bool:
    """CUDA tensors, or CPU tensors while the interpreter is on (checked at call time)."""
    dev = tensors[0].device
    if any(t.device != dev for t in tensors):
        return False
    return dev.type == "cuda" or (dev.type == "cpu" and interpreting())


def traceable(kernel, *tensors):
    """`kernel` as a triton_op body should launch it: through `torch.library.wrap_triton` while torch
    traces (torch.compile, torch.export, AOTI: fake or functional tensors, or a tracing mode active),
    directly in eager, where wrap_triton's dispatch costs ~0.1-0.2 ms of CPU per launch (measured on
    the H100: a 0.058 ms quantize took 0.242 ms a call eagerly)."""
    if _tracing(tensors):
        return torch.library.wrap_triton(kernel)
    return kernel


def tracing(*tensors) -> bool:
    """True while torch traces (compile, export, AOTI): fake/functional tensors or a tracing mode."""
    return _tracing(tensors)


def _tracing(tensors) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    if torch.compiler.is_compiling():
        return True
    keys = torch._C._TorchDispatchModeKey
    if any(torch._C._get_dispatch_mode(k) is not None for k in (keys.FAKE, keys.PROXY, keys.FUNCTIONAL)):
        return True
    return any(isinstance(t, torch.Tensor) and (is_fake(t) or torch._is_functional_tensor(t)) for t in tensors)


def define_op(qualname: str, fn: Callable, fake: Callable, kernel):
    """`vdrt::name` as a triton_op (torch.compile/export/AOTI compile the kernel in).

    An interpreted kernel cannot be traced (its launches are plain Python), so then the op
    is an opaque custom_op with `fake` as its meta implementation.
    """
    if is_interpreted(kernel):
        op = torch.library.custom_op(qualname, fn, mutates_args=())
        op.register_fake(fake)
        return op
    return torch.library.triton_op(qualname, fn, mutates_args=())


# ---------------------------------------------------------------- jit helpers


@triton.jit
def cast_out(x, DTYPE: tl.constexpr, EMULATE: tl.constexpr):
    """fp32 x -> DTYPE, rounding to nearest even. EMULATE (interpreter only) rounds to bf16 in
    integer arithmetic first, as the GPU's cvt.rn does: the interpreter's own cast truncates."""
    if EMULATE:
        if DTYPE == tl.bfloat16:
            bits = x.to(tl.float32).to(tl.int32, bitcast=True)
            x = ((bits + 0x7FFF + ((bits >> 16) & 1)) & -65536).to(tl.float32, bitcast=True)
    return x.to(DTYPE)


@triton.jit
def to_e4m3(x, EMULATE: tl.constexpr):
    """fp32 -> float8e4nv (round to nearest even, saturating at +-448). EMULATE (interpreter
    only) snaps to the e4m3 grid in fp32 first: the interpreter's cast loses rounding carries."""
    x = tl.minimum(tl.maximum(x, -448.0), 448.0)
    if EMULATE:
        bits = x.to(tl.int32, bitcast=True)
        normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) & -1048576).to(tl.float32, bitcast=True)
        subnormal = (x + 24576.0) - 24576.0  # multiples of 2**-9 below 2**-6
        x = tl.where(tl.abs(x) < 0.015625, subnormal, normal)
    return x.to(tl.float8e4nv)
