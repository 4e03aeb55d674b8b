"""The CUDA (NVRTC) per-token fp8 quantizer: csrc/quant_fp8.cu.

    q, scale = quant_fp8(x)   # (..., K) bf16 -> (..., K) float8_e4m3fn, (..., 1) fp32; x ~ q * scale

scale = max(amax over K, 1e-12) / 448 per token, as kernels/quant.py and kernels/adaln.py.
Needs K % 8 == 0 and a GPU of sm_89 or newer (the e4m3 convert instruction).
"""
from __future__ import annotations

import ctypes

import torch

from vdrt.cuda import nvrtc
from vdrt.errors import ConfigError

SOURCE = "quant_fp8.cu"
BLOCK = 256
FP8_MAX = 448.0


def reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch: (..., K) -> (..., K) e4m3, (..., 1) fp32."""
    xf = x.float()
    s = xf.abs().amax(-1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return (xf / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), s


def supports(x) -> bool:
    return (isinstance(x, torch.Tensor) and x.is_cuda and x.dtype == torch.bfloat16 and x.dim() >= 1
            and x.shape[-1] % 8 == 0 and x.numel() > 0
            and torch.cuda.get_device_capability(x.device) >= (8, 9) and nvrtc.available())


def quant_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., K) bf16 CUDA -> (q (..., K) float8_e4m3fn, scale (..., 1) fp32)."""
    if not supports(x):
        raise ConfigError(f"quant_fp8 takes bf16 CUDA tensors with K % 8 == 0 on sm_89+, got {x.dtype} "
                          f"{tuple(x.shape)} on {x.device}; use vdrt.cuda.quant_fp8.reference instead")
    k = x.shape[-1]
    rows = x.reshape(-1, k)
    if rows.stride(-1) != 1 or rows.stride(0) % 8 or rows.data_ptr() % 16:
        rows = rows.contiguous()
    q = torch.empty(rows.shape, dtype=torch.uint8, device=x.device)
    scale = torch.empty((rows.shape[0], 1), dtype=torch.float32, device=x.device)
    kernel = nvrtc.load_kernel(SOURCE, "quant_fp8_e4m3_bf16", arch=nvrtc.current_arch(x.device))
    args = [rows, rows.stride(0), q, scale, k]
    types = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    kernel((rows.shape[0],), (BLOCK,), args, types, device=x.device.index)
    return q.view(torch.float8_e4m3fn).reshape(x.shape), scale.reshape(*x.shape[:-1], 1)
