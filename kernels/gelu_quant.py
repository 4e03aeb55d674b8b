"""GELU (tanh) fused with per-token fp8 quantization: the producer of the FFN-out linear's input.

Shapes (one alphabet): h (M, C) viewed 2D (leading dims folded into M; C = the FFN width), any
strides in M, unit stride in C. Per token (row), in fp32:
    g = gelu_tanh(h) = h * sigmoid(2u),  u = sqrt(2/pi) * (h + 0.044715 h^3)   (= 0.5 h (1 + tanh u))
    s = max(amax_C |g|, 1e-12) / 448,  q = e4m3(g / s)   (round to nearest even, saturating)
so g ~ q * s, with scales (M, 1) fp32 as kernels/quant.py and kernels/adaln.py write them.

Why standalone and not the FFN-in GEMM's epilogue: our fp8 GEMM is cuBLASLt's (`torch._scaled_mm`),
which has no programmable epilogue, and a per-token amax needs the whole row of C = 8960 / 13824
outputs, which one GEMM tile (128-256 columns) does not hold. This kernel replaces the two passes
the separate path runs (GELU: read bf16 + write bf16; quantize: read bf16 + write fp8) with one.

Kernel: grid (cdiv(M, BLOCK_R),); rows of C <= 16384 stay in registers (h read once); wider rows
are read twice (amax pass, then quantize pass, GELU recomputed).

Cost model (M tokens, C channels, elem = bytes of h's dtype):
    bytes moved = M*C*elem (read h) + M*C (write codes) + 4*M (scales); FLOPs ~ 12*M*C (memory-bound)
    the separate path (GELU, then quantize) moves M*C*(3*elem + 1) + 4*M bytes: 2.3x more for bf16.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdrt.kernels._common import define_op, interpreting, to_e4m3, traceable

FP8_MAX = 448.0
EPS = 1e-12
ONE_PASS_MAX_C = 16384
_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def reference(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain torch, fp32 (float64 if h is): (..., C) -> codes (..., C) e4m3, scale (..., 1) fp32."""
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    g = torch.nn.functional.gelu(h.to(acc), approximate="tanh")
    s = g.abs().amax(-1, keepdim=True).clamp_min(EPS) / FP8_MAX
    return (g / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), s.float()


@triton.jit
def _gelu_tanh(h):
    """fp32 -> fp32: h * sigmoid(2u), which equals 0.5 h (1 + tanh u) without tanh's cancellation."""
    u = 0.7978845608028654 * (h + 0.044715 * h * h * h)  # sqrt(2 / pi)
    return h / (1.0 + tl.exp(tl.minimum(-2.0 * u, 80.0)))  # exp(80) < fp32 max: no inf (g is ~0 there)


@triton.jit
def _gelu_quant_kernel(H, Q, S, R, C, stride_hr, stride_qr, EMULATE: tl.constexpr, BLOCK_R: tl.constexpr,
                       BLOCK_C: tl.constexpr, ONE_PASS: tl.constexpr):
    """Grid (cdiv(R, BLOCK_R),): q[r, :] = e4m3(gelu(h[r, :]) / s[r]), s[r] = amax / 448."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    row_ok = rows[:, None] < R
    h_row = H + rows[:, None].to(tl.int64) * stride_hr
    q_row = Q + rows[:, None].to(tl.int64) * stride_qr
    if ONE_PASS:
        m = row_ok & (cols[None, :] < C)
        g = _gelu_tanh(tl.load(h_row + cols[None, :], mask=m, other=0.0).to(tl.float32))
        scale = tl.maximum(tl.max(tl.abs(g), 1), 1e-12) / 448.0
        tl.store(q_row + cols[None, :], to_e4m3(g / scale[:, None], EMULATE), mask=m)
    else:
        amax = tl.zeros([BLOCK_R], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            m = row_ok & ((c0 + cols)[None, :] < C)
            g = _gelu_tanh(tl.load(h_row + (c0 + cols)[None, :], mask=m, other=0.0).to(tl.float32))
            amax = tl.maximum(amax, tl.max(tl.abs(g), 1))
        scale = tl.maximum(amax, 1e-12) / 448.0
        for c0 in range(0, C, BLOCK_C):
            m = row_ok & ((c0 + cols)[None, :] < C)
            g = _gelu_tanh(tl.load(h_row + (c0 + cols)[None, :], mask=m, other=0.0).to(tl.float32))
            tl.store(q_row + (c0 + cols)[None, :], to_e4m3(g / scale[:, None], EMULATE), mask=m)
    tl.store(S + rows, scale, mask=rows < R)


def check(h) -> None:
    """Refuse, in one line, inputs the kernel cannot take (before any work)."""
    from vdrt.errors import ConfigError

    if not isinstance(h, torch.Tensor) or h.dtype not in _DTYPES or h.dim() < 1 or h.shape[-1] == 0:
        what = f"{h.dtype} {tuple(h.shape)}" if isinstance(h, torch.Tensor) else type(h).__name__
        raise ConfigError(f"gelu_quant_fp8 takes a (..., C) bf16/fp16/fp32 tensor with C >= 1, got {what}")
    if h.stride(-1) != 1 and h.numel() > 0:
        raise ConfigError(f"gelu_quant_fp8 needs unit stride in the last dim (strides {h.stride()}); "
                          "pass h.contiguous()")


def _config(c: int) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_C, num_warps), as kernels/quant.py's per-token quantize."""
    if interpreting():
        return 4, min(triton.next_power_of_2(c), 64), 4
    if c <= 2048:
        return 4, triton.next_power_of_2(c), 8
    if c <= ONE_PASS_MAX_C:
        return 1, triton.next_power_of_2(c), 16
    return 4, 2048, 8


def launch(h: torch.Tensor, out=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., C) -> codes (..., C) e4m3, scale (..., 1) fp32; `out` = preallocated (codes, scale) of those shapes."""
    check(h)
    c = h.shape[-1]
    h2 = h.reshape(-1, c)
    r = h2.shape[0]
    q, s = out if out is not None else (torch.empty((r, c), dtype=torch.float8_e4m3fn, device=h.device),
                                        torch.empty((r, 1), dtype=torch.float32, device=h.device))
    block_r, block_c, warps = _config(c)
    if r:
        traceable(_gelu_quant_kernel, h2)[(triton.cdiv(r, block_r),)](
            h2, q, s, r, c, h2.stride(0), q.stride(0), EMULATE=interpreting(), BLOCK_R=block_r, BLOCK_C=block_c,
            ONE_PASS=c <= block_c, num_warps=warps)
    return q.view(h.shape), s.view(*h.shape[:-1], 1)


def _impl(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """vdrt::gelu_quant_fp8: (..., C) -> (codes (..., C) e4m3, scale (..., 1) fp32)."""
    return launch(h)


def _fake(h):
    check(h)
    return h.new_empty(h.shape, dtype=torch.float8_e4m3fn), h.new_empty((*h.shape[:-1], 1), dtype=torch.float32)


gelu_quant_fp8 = define_op("vdrt::gelu_quant_fp8", _impl, _fake, _gelu_quant_kernel)


def bytes_moved(m: int, c: int, elem: int = 2) -> dict[str, int]:
    """Bytes each path moves for an (m, c) FFN activation: fused (this kernel) vs separate (GELU, quantize)."""
    return {"fused": m * c * (elem + 1) + 4 * m, "separate": m * c * (3 * elem + 1) + 4 * m}


def register_ops() -> None:
    """No registry op of its own: vdrt/models/fp8.py calls vdrt::gelu_quant_fp8 on the producer-fed path."""

