"""The CUDA (NVRTC) temporal attention: csrc/temporal_attention.cu, one warp per sequence.

    out = temporal_attention(q, k, v)    # (B, F, S, H, D) bf16 x3 -> (B, F, S, H, D)

Same native layout and strides as the Triton kernel (vdrt.kernels.temporal_attention). The
source is compiled once per (T, D) with -DTA_T/-DTA_D (cached on disk) and launched on torch's
current stream; launch it once before capturing a CUDA graph (the first call loads the module).
Registered as implementation "cuda" of vdrt.ops.temporal_attention; the Triton kernel ("vdrt")
stays the automatic choice, so `ops.use(temporal_attention="cuda")` selects this one.
"""
from __future__ import annotations

import ctypes
import functools
import math

import torch

from vdrt.cuda import nvrtc

SOURCE = "temporal_attention.cu"
MAX_T, MAX_D = 64, 128
SMEM_BUDGET = 96 * 1024


def warp_smem_bytes(t: int, d: int) -> int:
    """Shared memory one warp stages: k and v in fp32, q (then o) in bf16 rows padded by 8."""
    return 2 * t * d * 4 + t * (d + 8) * 2


def warps_per_block(t: int, d: int) -> int:
    return max(1, min(4, SMEM_BUDGET // warp_smem_bytes(t, d)))


_ARG_TYPES = ([ctypes.c_void_p] * 4 + [ctypes.c_int] * 3 + [ctypes.c_longlong] * 16 + [ctypes.c_float])


def launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Run the kernel on q's device and torch's current stream; `out` may be given (poisoned in tests)."""
    b, f, s, h, d = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device) if out is None else out
    kernel = nvrtc.load_kernel(SOURCE, "temporal_attention_bf16", options=(f"-DTA_T={f}", f"-DTA_D={d}"),
                               arch=nvrtc.current_arch(q.device))
    wpb, n_seq = warps_per_block(f, d), b * s * h
    strides = [st for x in (q, k, v, out) for st in x.stride()[:4]]
    args = [q, k, v, out, n_seq, s, h, *strides, math.log2(math.e) / math.sqrt(d)]
    kernel((_cdiv(n_seq, wpb),), (32 * wpb,), args, _ARG_TYPES,
           shared_mem=wpb * warp_smem_bytes(f, d), device=q.device.index)
    return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@torch.library.custom_op("vdrt::cuda_temporal_attention", mutates_args=())
def temporal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, F, S, H, D) bf16 x3 -> (B, F, S, H, D); opaque to torch.compile (not exportable to AOTI)."""
    return launch(q, k, v)


@temporal_attention.register_fake
def _(q, k, v):
    return q.new_empty(q.shape)


@functools.lru_cache(maxsize=None)
def _usable(device_index: int) -> bool:
    return nvrtc.available() and torch.cuda.get_device_capability(device_index) >= (8, 0)


def supports(q, k, v) -> bool:
    """bf16 CUDA tensors of one shape, T <= 64, D % 8 == 0 <= 128, 16-byte aligned rows, NVRTC loadable."""
    if not all(isinstance(x, torch.Tensor) for x in (q, k, v)) or q.dim() != 5 or q.numel() == 0:
        return False
    if not (q.shape == k.shape == v.shape and all(x.dtype == torch.bfloat16 and x.is_cuda for x in (q, k, v))):
        return False
    _, f, _, _, d = q.shape
    if f > MAX_T or d > MAX_D or d % 8:
        return False
    aligned = all(x.stride(-1) == 1 and x.data_ptr() % 16 == 0 and all(st % 8 == 0 for st in x.stride()[:4])
                  for x in (q, k, v))
    return aligned and q.device == k.device == v.device and _usable(q.device.index or 0)


def _op(q, k, v):
    return torch.ops.vdrt.cuda_temporal_attention(q, k, v)


def register_ops() -> None:
    from vdrt import ops

    ops.register("temporal_attention", "cuda", _op, supports=supports)
