"""FP8 (e4m3) and INT8 quantization kernels, and the fp8 / int8 linears built on them.

Shapes (one alphabet): x (M, C) viewed 2D (leading dims folded into M), weight (N, K).
- per-token:   one scale per row,    scale (M, 1) = amax_C |x| / QMAX
- per-channel: one scale per column, scale (1, C) = amax_M |x| / QMAX
QMAX is 448 for fp8 e4m3 (round to nearest even, saturating) and 127 for int8 (round half
away from zero, clamped to [-127, 127]). amax is clamped to EPS first, so an all-zero token
quantizes to zeros with a finite scale (no NaN / inf). Dequantize: x ~= q * scale.
A linear weight (N, K) is quantized per output channel: per-token over its rows, scale (N, 1).

Linears, y = x W^T + b with x (..., K) bf16, W (N, K) quantized:
- `fp8_linear`: per-token fp8 activation quantization (our kernel) + `torch._scaled_mm` with
  rowwise scales (x_scale (M, 1) x w_scale (1, N)), bf16 out, bias fused. Needs K, N % 16 == 0.
- `int8_linear`: per-token int8 activation quantization + `torch._int_mm` (int32 out; M is
  padded to > 16 rows, K, N % 8 == 0) + one fused dequant epilogue kernel (scales, bias, cast).

Cost model:
  quantize:   reads M*C*2 bytes (bf16) about twice (amax pass, then quantize pass, mostly L2),
              writes M*C + 4*M bytes; FLOPs negligible. Ceiling: 3.0 TB/s copy on the H100.
  linear:     2*M*N*K FLOPs on 8-bit tensor cores (fp8 GEMM ceiling 1263 TFLOP/s measured),
              plus the quantize pass over x and, for int8, the epilogue (M*N*(4 + 2) bytes).

Producer-fed fp8 (`fp8_linear_prequant`): x arrives as e4m3 codes + per-token fp32 scales written by
the kernel that produced it (kernels/adaln.py's fp8 output, kernels/gelu_quant.py), wrapped in a
`vdrt.ops.QuantizedActivation`; only the GEMM runs. On the CPU the op multiplies the same codes in fp32.

Registry implementations of op "linear" ("vdrt-fp8", "vdrt-fp8-separate", "vdrt-int8") take bf16 weights
and quantize each on first use into a cache (see `_WeightCache`); they are opt-in (forced choice).
"vdrt-fp8" takes producer-fed activations where the model has them (vdrt/models/fp8.py);
"vdrt-fp8-separate" is the same linear with every activation quantized in its own pass (the baseline).
For torch.export / AOTI, quantize weights ahead with `quantize_linear_weight` and call
`torch.ops.vdrt.fp8_linear` / `int8_linear` directly: the cache is eager-only.
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from vdrt.kernels._common import cast_out, to_e4m3, traceable
from vdrt.kernels._common import interpreting as _interpreting
from vdrt.ops import QuantizedActivation

log = logging.getLogger(__name__)

FP8_MAX = 448.0
INT8_MAX = 127.0
EPS = 1e-12
KINDS = {"fp8": (torch.float8_e4m3fn, FP8_MAX), "int8": (torch.int8, INT8_MAX)}


def _kind(kind: str):
    if kind not in KINDS:
        raise ValueError(f"unknown quantization kind {kind!r}; choose 'fp8' or 'int8'")
    return KINDS[kind]


def reference_quantize(x: torch.Tensor, kind: str, dim: int = -1):
    """Quantize with one scale per slice along `dim` (amax over `dim`): (q, scale fp32, keepdim)."""
    dtype, qmax = _kind(kind)
    scale = x.float().abs().amax(dim=dim, keepdim=True).clamp_min(EPS) / qmax
    y = x.float() / scale
    if kind == "int8":
        y = torch.trunc(y + 0.5 * torch.sign(y)).clamp(-qmax, qmax)
    else:
        y = y.clamp(-qmax, qmax)
    return y.to(dtype), scale


def reference_dequantize(q: torch.Tensor, scale: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return (q.float() * scale).to(dtype)


# ---------------------------------------------------------------- Triton kernels


@triton.jit
def to_int8(y):
    """Round half away from zero and clamp to [-127, 127]."""
    y = tl.where(y >= 0, y + 0.5, y - 0.5)
    return tl.minimum(tl.maximum(y, -127.0), 127.0).to(tl.int8)


@triton.jit
def _quant_rows_kernel(X, Q, S, R, C, stride_xr, stride_xc, stride_qr, stride_qc,
                       IS_FP8: tl.constexpr, EMULATE: tl.constexpr, BLOCK_R: tl.constexpr,
                       BLOCK_C: tl.constexpr, ONE_PASS: tl.constexpr):
    """Grid (cdiv(R, BLOCK_R),): each row r of x (R, C) gets q[r, :] and scale S[r] = amax / QMAX.

    ONE_PASS (C <= BLOCK_C): the rows stay in registers between the amax and the quantization,
    so x is read once; otherwise x is read twice (amax pass, then quantize pass).
    """
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    row_ok = rows[:, None] < R
    x_row = X + rows[:, None].to(tl.int64) * stride_xr
    q_row = Q + rows[:, None].to(tl.int64) * stride_qr
    if ONE_PASS:
        m = row_ok & (cols[None, :] < C)
        x = tl.load(x_row + cols[None, :] * stride_xc, mask=m, other=0.0).to(tl.float32)
        scale = _row_scale(tl.max(tl.abs(x), 1), IS_FP8)
        tl.store(q_row + cols[None, :] * stride_qc, to_codes(x / scale[:, None], IS_FP8, EMULATE), mask=m)
    else:
        amax = tl.zeros([BLOCK_R], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            m = row_ok & ((c0 + cols)[None, :] < C)
            x = tl.load(x_row + (c0 + cols)[None, :] * stride_xc, mask=m, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.max(tl.abs(x), 1))
        scale = _row_scale(amax, IS_FP8)
        for c0 in range(0, C, BLOCK_C):
            m = row_ok & ((c0 + cols)[None, :] < C)
            x = tl.load(x_row + (c0 + cols)[None, :] * stride_xc, mask=m, other=0.0).to(tl.float32)
            tl.store(q_row + (c0 + cols)[None, :] * stride_qc, to_codes(x / scale[:, None], IS_FP8, EMULATE),
                     mask=m)
    tl.store(S + rows, scale, mask=rows < R)


@triton.jit
def _row_scale(amax, IS_FP8: tl.constexpr):
    if IS_FP8:
        scale = tl.maximum(amax, 1e-12) / 448.0
    else:
        scale = tl.maximum(amax, 1e-12) / 127.0
    return scale


@triton.jit
def to_codes(y, IS_FP8: tl.constexpr, EMULATE: tl.constexpr):
    """fp32 -> e4m3 or int8 codes (y already divided by its scale). One return statement: compiled Triton rejects
    returns of different types under a constexpr if."""
    if IS_FP8:
        q = to_e4m3(y, EMULATE)
    else:
        q = to_int8(y)
    return q


@triton.jit
def _quant_cols_kernel(X, SC, Q, M, C, stride_xm, stride_xc, IS_FP8: tl.constexpr, EMULATE: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """Grid (cdiv(M, BLOCK_M), cdiv(C, BLOCK_C)): q[m, c] = quantize(x[m, c] / sc[c]), q (M, C) row-major."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    m = (rm[:, None] < M) & (rc[None, :] < C)
    x = tl.load(X + rm[:, None].to(tl.int64) * stride_xm + rc[None, :] * stride_xc, mask=m, other=0.0)
    y = x.to(tl.float32) / tl.load(SC + rc, mask=rc < C, other=1.0)[None, :]
    tl.store(Q + rm[:, None].to(tl.int64) * C + rc[None, :], to_codes(y, IS_FP8, EMULATE), mask=m)


@triton.jit
def _dequant_kernel(Q, SR, SC, Bias, O, M, N, stride_qm, stride_qn, stride_om, stride_on,
                    HAS_SR: tl.constexpr, HAS_SC: tl.constexpr, HAS_BIAS: tl.constexpr,
                    EMULATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Grid (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)): o = q * sr[m] * sc[n] + bias[n], cast to O's dtype."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = (rm[:, None] < M) & (rn[None, :] < N)
    y = tl.load(Q + rm[:, None].to(tl.int64) * stride_qm + rn[None, :] * stride_qn, mask=m)
    y = y.to(tl.float32)
    if HAS_SR:
        y = y * tl.load(SR + rm, mask=rm < M, other=0.0)[:, None]
    if HAS_SC:
        y = y * tl.load(SC + rn, mask=rn < N, other=0.0)[None, :]
    if HAS_BIAS:
        y = y + tl.load(Bias + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(O + rm[:, None].to(tl.int64) * stride_om + rn[None, :] * stride_on,
             cast_out(y, O.dtype.element_ty, EMULATE), mask=m)


# ---------------------------------------------------------------- launchers


def quantize_rows(x: torch.Tensor, kind: str, out: tuple | None = None):
    """x (R, C), any strides -> q (R, C) row-major, scale (R, 1) fp32: one scale per row.

    `out` = (q, scale) preallocated buffers of those shapes and dtypes, if given.
    """
    dtype, _ = _kind(kind)
    r, c = x.shape
    if out is None:
        out = (torch.empty((r, c), dtype=dtype, device=x.device),
               torch.empty((r, 1), dtype=torch.float32, device=x.device))
    q, scale = out
    _launch_rows(x, q, scale, kind)
    return q, scale


ONE_PASS_MAX_C = 16384  # rows up to this many channels are read once (one row per program above 2048)


def _launch_rows(x, q, scale, kind: str) -> None:
    r, c = x.shape
    if _interpreting():
        block_r, block_c, warps = 4, min(triton.next_power_of_2(c), 64), 4
    elif c <= 2048:
        block_r, block_c = 4, triton.next_power_of_2(c)
        warps = 8 if block_r * block_c >= 4096 else 4
    elif c <= ONE_PASS_MAX_C:
        block_r, block_c, warps = 1, triton.next_power_of_2(c), 16
    else:
        block_r, block_c, warps = 4, 2048, 8
    traceable(_quant_rows_kernel, x)[(triton.cdiv(r, block_r),)](
        x, q, scale, r, c, x.stride(0), x.stride(1), q.stride(0), q.stride(1),
        IS_FP8=kind == "fp8", EMULATE=_interpreting(), BLOCK_R=block_r, BLOCK_C=block_c, ONE_PASS=c <= block_c,
        num_warps=warps)


def quantize_per_token_fwd(x: torch.Tensor, kind: str):
    """(..., C) -> q (..., C), scale (..., 1): one scale per token (row)."""
    c = x.shape[-1]
    q, scale = quantize_rows(x.reshape(-1, c), kind)
    return q.view(x.shape), scale.view(*x.shape[:-1], 1)


def quantize_per_channel_fwd(x: torch.Tensor, kind: str):
    """(..., C) -> q (..., C), scale (1, C): one scale per channel, over all tokens.

    The amax over tokens is one torch reduction (parallel over M, which a per-channel program
    could not be at M = 32k, C = 1.5k); the quantization is our elementwise kernel.
    """
    dtype, qmax = _kind(kind)
    x2 = x.reshape(-1, x.shape[-1])
    m, c = x2.shape
    lo, hi = torch.aminmax(x2, dim=0)
    scale = (torch.maximum(hi.float(), -lo.float()).clamp_min(EPS) / qmax).view(1, c)
    q = torch.empty((m, c), dtype=dtype, device=x.device)
    bm, bc = (16, 32) if _interpreting() else (32, 128)
    traceable(_quant_cols_kernel, x2)[(triton.cdiv(m, bm), triton.cdiv(c, bc))](
        x2, scale, q, m, c, x2.stride(0), x2.stride(1), IS_FP8=kind == "fp8", EMULATE=_interpreting(),
        BLOCK_M=bm, BLOCK_C=bc, num_warps=4)
    return q.view(x.shape), scale


def dequant_epilogue(q, row_scale=None, col_scale=None, bias=None, dtype=torch.bfloat16, out=None):
    """q (M, N) int/fp8/fp32 -> (M, N) dtype: q * row_scale (M,) * col_scale (N,) + bias (N,)."""
    m, n = q.shape
    out = torch.empty((m, n), dtype=dtype, device=q.device) if out is None else out
    bm, bn = (16, 32) if _interpreting() else (32, 128)
    dummy = q
    traceable(_dequant_kernel, q)[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
        q, row_scale.contiguous() if row_scale is not None else dummy,
        col_scale.contiguous() if col_scale is not None else dummy,
        bias.contiguous() if bias is not None else dummy, out, m, n, q.stride(0), q.stride(1),
        out.stride(0), out.stride(1), HAS_SR=row_scale is not None, HAS_SC=col_scale is not None,
        HAS_BIAS=bias is not None, EMULATE=_interpreting(), BLOCK_M=bm, BLOCK_N=bn, num_warps=4)
    return out


def dequantize_fwd(q: torch.Tensor, scale: torch.Tensor, dtype=torch.bfloat16) -> torch.Tensor:
    """Inverse of quantize_per_token / quantize_per_channel: q (..., C) * scale -> dtype."""
    c = q.shape[-1]
    q2 = q.reshape(-1, c)
    if scale.shape[-1] == 1 and scale.numel() == q2.shape[0]:  # per-token (..., 1)
        out = dequant_epilogue(q2, row_scale=scale.reshape(-1), dtype=dtype)
    elif scale.shape[-1] == c and scale.numel() == c:  # per-channel (1, C)
        out = dequant_epilogue(q2, col_scale=scale.reshape(-1), dtype=dtype)
    else:
        raise ValueError(f"scale {tuple(scale.shape)} is neither per-token nor per-channel for {tuple(q.shape)}")
    return out.view(q.shape)


# ---------------------------------------------------------------- linears


def quantize_linear_weight(weight: torch.Tensor, kind: str = "fp8"):
    """W (N, K) -> (qweight (N, K) fp8/int8, scale (N, 1) fp32), one scale per output channel.

    Runs our kernel on CUDA (or under TRITON_INTERPRET=1), the torch reference elsewhere.
    """
    if weight.dim() != 2:
        raise ValueError(f"a linear weight is (N, K); got {tuple(weight.shape)}")
    if weight.is_cuda or _interpreting():
        return quantize_rows(weight.detach(), kind)
    return reference_quantize(weight.detach(), kind, dim=-1)


def fp8_linear_fwd(x, weight_fp8, w_scale, bias=None, fast_accum: bool = True) -> torch.Tensor:
    """(..., K) bf16 x (N, K) e4m3 with w_scale (N elements) -> (..., N) bf16 via _scaled_mm."""
    k, n = x.shape[-1], weight_fp8.shape[0]
    xq, xs = quantize_rows(x.reshape(-1, k), "fp8")  # (M, K) e4m3, (M, 1)
    out = scaled_mm_rowwise(xq, xs, weight_fp8, w_scale.reshape(1, n).float(), bias, fast_accum)
    return out.reshape(*x.shape[:-1], n)


# cuBLASLt's rowwise-scaled fp8 GEMM has no algorithm for some small-M shapes on the H100 (M=5 at
# K=1536; M<=17 at K=8960, N=1536 under torch 2.11 + CUDA 13): rows are padded to the first of these
# multiples that cuBLASLt accepts, remembered per (M, K, N); if none is, the same fp8 codes are
# multiplied in bf16 (e4m3 codes are exact in bf16; scales applied to the fp32-accumulated sums),
# correct at bf16 speed, logged once per shape.
SCALED_MM_ROW_MULTIPLES = (1, 16, 64, 128)  # 1 first: padding M=32760 to 32768 costs a copy of x
_MM_PLAN: dict[tuple[int, int, int], int] = {}  # (M, K, N) -> accepted row multiple, 0 = dequantized


def scaled_mm_rowwise(xq, xs, wq, ws, bias, fast_accum: bool) -> torch.Tensor:
    """(M, K) e4m3 * xs (M, 1) @ ((N, K) e4m3 * ws (1, N)).T + bias -> (M, N) bf16."""
    key = (xq.shape[0], xq.shape[1], wq.shape[0])
    plan = _MM_PLAN.get(key)
    for multiple in (plan,) if plan is not None else SCALED_MM_ROW_MULTIPLES:
        if not multiple:
            break
        try:
            out = _scaled_mm_padded(xq, xs, wq, ws, bias, fast_accum, multiple)
        except RuntimeError as e:
            if "NOT_SUPPORTED" not in str(e):
                raise
            continue
        _MM_PLAN[key] = multiple
        return out
    if _MM_PLAN.get(key) != 0:
        log.warning("cuBLASLt has no rowwise fp8 GEMM for M=%d K=%d N=%d; multiplying the same fp8 codes "
                    "dequantized in bf16 for this shape", *key)
        _MM_PLAN[key] = 0
    return _dequantized_mm(xq, xs, wq, ws, bias)


def _scaled_mm_padded(xq, xs, wq, ws, bias, fast_accum: bool, multiple: int) -> torch.Tensor:
    m = xq.shape[0]
    pad = -m % multiple
    if pad:
        xq = torch.nn.functional.pad(xq.view(torch.uint8), (0, 0, 0, pad)).view(xq.dtype)
        xs = torch.nn.functional.pad(xs, (0, 0, 0, pad), value=1.0)
    return torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=ws, bias=bias, out_dtype=torch.bfloat16,
                            use_fast_accum=fast_accum)[:m]


def _dequantized_mm(xq, xs, wq, ws, bias) -> torch.Tensor:
    codes = torch.nn.functional.linear(xq.to(torch.bfloat16), wq.to(torch.bfloat16))  # (M, N), exact products
    out = codes.float() * xs * ws.reshape(1, -1)
    if bias is not None:
        out = out + bias.float()
    return out.to(torch.bfloat16)


INT_MM_MIN_M = 17  # torch._int_mm on CUDA wants more than 16 rows


def int8_linear_fwd(x, weight_int8, w_scale, bias=None) -> torch.Tensor:
    """(..., K) bf16/fp16 x (N, K) int8 with w_scale (N elements) -> (..., N) in x's dtype."""
    k, n = x.shape[-1], weight_int8.shape[0]
    xq, xs = quantize_rows(x.reshape(-1, k), "int8")  # (M, K) int8, (M, 1)
    m = xq.shape[0]
    if m < INT_MM_MIN_M:
        xq = torch.nn.functional.pad(xq, (0, 0, 0, 32 - m))
    acc = torch._int_mm(xq, weight_int8.t())[:m]  # (M, N) int32
    out = dequant_epilogue(acc, xs.reshape(-1), w_scale.reshape(-1).float(), bias, dtype=x.dtype)
    return out.view(*x.shape[:-1], n)


# ---------------------------------------------------------------- torch.library ops


@triton_op("vdrt::quantize_per_token", mutates_args=())
def quantize_per_token(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """vdrt::quantize_per_token: (..., C) -> q (..., C) fp8/int8, scale (..., 1) fp32."""
    return quantize_per_token_fwd(x, kind)


@quantize_per_token.register_fake
def _qpt_fake(x, kind):
    return x.new_empty(x.shape, dtype=_kind(kind)[0]), x.new_empty((*x.shape[:-1], 1), dtype=torch.float32)


@triton_op("vdrt::quantize_per_channel", mutates_args=())
def quantize_per_channel(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """vdrt::quantize_per_channel: (..., C) -> q (..., C) fp8/int8, scale (1, C) fp32."""
    return quantize_per_channel_fwd(x, kind)


@quantize_per_channel.register_fake
def _qpc_fake(x, kind):
    return x.new_empty(x.shape, dtype=_kind(kind)[0]), x.new_empty((1, x.shape[-1]), dtype=torch.float32)


@triton_op("vdrt::dequantize", mutates_args=())
def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """vdrt::dequantize: q (..., C) with a per-token or per-channel scale -> (..., C) dtype."""
    return dequantize_fwd(q, scale, dtype)


@dequantize.register_fake
def _dq_fake(q, scale, dtype):
    return q.new_empty(q.shape, dtype=dtype)


@triton_op("vdrt::fp8_linear", mutates_args=())
def fp8_linear(x: torch.Tensor, weight_fp8: torch.Tensor, w_scale: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """vdrt::fp8_linear: (..., K) bf16, (N, K) e4m3, (N,) scales, bias (N,) bf16 -> (..., N) bf16."""
    return fp8_linear_fwd(x, weight_fp8, w_scale, bias)


@fp8_linear.register_fake
def _fp8_linear_fake(x, weight_fp8, w_scale, bias=None):
    return x.new_empty((*x.shape[:-1], weight_fp8.shape[0]), dtype=torch.bfloat16)


def check_prequant(codes, scale, weight_fp8, w_scale) -> None:
    """Refuse, in one line, inputs fp8_linear_prequant cannot take (before any work)."""
    from vdrt.errors import ConfigError

    problem = None
    if codes.dtype != torch.float8_e4m3fn or weight_fp8.dtype != torch.float8_e4m3fn:
        problem = f"codes and weight must be float8_e4m3fn, got {codes.dtype} and {weight_fp8.dtype}"
    elif scale.dtype != torch.float32 or w_scale.dtype != torch.float32:
        problem = f"scales must be float32, got {scale.dtype} and {w_scale.dtype}"
    elif codes.dim() < 1 or scale.shape != (*codes.shape[:-1], 1):
        problem = f"scale {tuple(scale.shape)} must be codes' shape with a last dim of 1 (codes {tuple(codes.shape)})"
    elif weight_fp8.dim() != 2 or weight_fp8.shape[1] != codes.shape[-1] or w_scale.numel() != weight_fp8.shape[0]:
        problem = (f"weight {tuple(weight_fp8.shape)} (N, K) with w_scale of N elements must match codes' "
                   f"K={codes.shape[-1]}; got w_scale {tuple(w_scale.shape)}")
    if problem:
        raise ConfigError(f"fp8_linear_prequant: {problem}; quantize with vdrt.kernels.quant.quantize_rows / "
                          "quantize_linear_weight")


def prequant_linear_fwd(codes, scale, weight_fp8, w_scale, bias, out_dtype):
    """(..., K) e4m3 * scale (..., 1) @ ((N, K) e4m3 * w_scale (N)).T + bias -> (..., N) out_dtype.

    CUDA: `_scaled_mm` (bf16 out, cast if out_dtype differs); CPU: the products of the same codes in fp32."""
    check_prequant(codes, scale, weight_fp8, w_scale)
    k, n = codes.shape[-1], weight_fp8.shape[0]
    xq, xs = codes.reshape(-1, k), scale.reshape(-1, 1)
    if codes.is_cuda:
        out = scaled_mm_rowwise(xq, xs, weight_fp8, w_scale.reshape(1, n), bias, True).to(out_dtype)
    else:
        w = weight_fp8.float() * w_scale.reshape(n, 1)
        out = torch.nn.functional.linear(xq.float() * xs, w, None if bias is None else bias.float()).to(out_dtype)
    return out.reshape(*codes.shape[:-1], n)


@torch.library.custom_op("vdrt::fp8_linear_prequant", mutates_args=())
def fp8_linear_prequant(codes: torch.Tensor, scale: torch.Tensor, weight_fp8: torch.Tensor, w_scale: torch.Tensor,
                        bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    """vdrt::fp8_linear_prequant: (..., K) e4m3, (..., 1) fp32, (N, K) e4m3, (N,) fp32, bias (N,) -> (..., N)."""
    return prequant_linear_fwd(codes, scale, weight_fp8, w_scale, bias, out_dtype)


@fp8_linear_prequant.register_fake
def _prequant_fake(codes, scale, weight_fp8, w_scale, bias, out_dtype):
    check_prequant(codes, scale, weight_fp8, w_scale)
    return codes.new_empty((*codes.shape[:-1], weight_fp8.shape[0]), dtype=out_dtype)


@triton_op("vdrt::int8_linear", mutates_args=())
def int8_linear(x: torch.Tensor, weight_int8: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """vdrt::int8_linear: (..., K), (N, K) int8, (N,) scales, bias (N,) -> (..., N) in x's dtype."""
    return int8_linear_fwd(x, weight_int8, w_scale, bias)


@int8_linear.register_fake
def _int8_linear_fake(x, weight_int8, w_scale, bias=None):
    return x.new_empty((*x.shape[:-1], weight_int8.shape[0]))


# ---------------------------------------------------------------- weight cache and registry


@dataclass
class _Entry:
    ref: weakref.ref
    version: int
    data_ptr: int
    qweight: torch.Tensor
    scale: torch.Tensor


class _WeightCache:
    """Quantized copies of bf16 weights, made on first use by the "vdrt-fp8"/"vdrt-int8" linears.

    Keyed on (id(weight), kind); an entry is used only while it still describes the same live
    tensor: the weakref resolves to that very object, with the same data_ptr and version counter
    (in-place updates such as load_state_dict bump the version; `.data = ...` changes data_ptr).
    A weight's entry is dropped when the weight is garbage collected, so ids are never confused.
    Inference-mode tensors have no version counter: for them only identity and data_ptr count.
    The cache holds one 8-bit copy per weight (half of the bf16 weight's memory); `clear()` frees it.
    """

    def __init__(self):
        self._entries: dict[tuple[int, str], _Entry] = {}

    def get(self, weight: torch.Tensor, kind: str):
        key = (id(weight), kind)
        e = self._entries.get(key)
        version = -1 if weight.is_inference() else weight._version
        if e is None or e.ref() is not weight or e.version != version or e.data_ptr != weight.data_ptr():
            qw, sc = quantize_linear_weight(weight, kind)
            ref = weakref.ref(weight, lambda _, key=key: self._entries.pop(key, None))
            e = self._entries[key] = _Entry(ref, version, weight.data_ptr(), qw, sc)
        return e.qweight, e.scale

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


WEIGHT_CACHE = _WeightCache()


def linear_fp8(x, weight, bias=None):
    """Op "linear" as "vdrt-fp8": quantizes `weight` once (cached), then fp8_linear (or, for a
    QuantizedActivation, fp8_linear_prequant on its codes)."""
    qw, sc = WEIGHT_CACHE.get(weight, "fp8")
    if isinstance(x, QuantizedActivation):
        return torch.ops.vdrt.fp8_linear_prequant(x.codes, x.scale, qw, sc.reshape(-1), bias, x.dtype)
    return torch.ops.vdrt.fp8_linear(x, qw, sc, bias)


def linear_int8(x, weight, bias=None):
    """Op "linear" as "vdrt-int8": quantizes `weight` once (cached), then int8_linear."""
    qw, sc = WEIGHT_CACHE.get(weight, "int8")
    x = x.dequantize() if isinstance(x, QuantizedActivation) else x
    return torch.ops.vdrt.int8_linear(x, qw, sc, bias)


def emulate_linear(kind: str):
    """Op "linear" as "vdrt-fp8"/"vdrt-int8" for CPU tensors: the kernels' quantization (x per token, W per
    output channel, `reference_quantize`), the products of the dequantized codes in fp32, the bias, x's dtype.
    The kernels' bf16 inputs and outputs are not rounded here: their error is far below the 8-bit codes'."""
    def linear(x, weight, bias=None):
        if isinstance(x, QuantizedActivation):
            if kind == "fp8":  # producer-fed: the same codes, multiplied in fp32 by the op's CPU path
                wq, ws = reference_quantize(weight, "fp8")
                return torch.ops.vdrt.fp8_linear_prequant(x.codes, x.scale, wq, ws.reshape(-1), bias, x.dtype)
            x = x.dequantize()
        xq, xs = reference_quantize(x.reshape(-1, x.shape[-1]), kind)  # (M, K), (M, 1)
        wq, ws = reference_quantize(weight, kind)  # (N, K), (N, 1)
        out = torch.nn.functional.linear(reference_dequantize(xq, xs), reference_dequantize(wq, ws),
                                         None if bias is None else bias.float())
        return out.reshape(*x.shape[:-1], weight.shape[0]).to(x.dtype)
    return linear


def _linear_ok(name: str, x, weight, bias, multiple: int) -> bool:
    from vdrt import ops

    if isinstance(x, QuantizedActivation):
        x = x.codes
    if ops.get_choice("linear") != name or torch.compiler.is_compiling():
        return False
    if not (x.is_cuda and weight.is_cuda) or weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        return False
    n, k = weight.shape
    return k % multiple == 0 and n % multiple == 0 and x.numel() > 0 and (bias is None or bias.dim() == 1)


def supports_fp8(x, weight, bias=None, name: str = "vdrt-fp8") -> bool:
    """Opt-in (`name` forced), eager, CUDA sm89+, bf16 x (or a bf16 QuantizedActivation) and bias, K and N
    multiples of 16."""
    if not _linear_ok(name, x, weight, bias, 16) or x.dtype != torch.bfloat16:
        return False
    dev = x.codes.device if isinstance(x, QuantizedActivation) else x.device
    return (bias is None or bias.dtype == torch.bfloat16) and torch.cuda.get_device_capability(dev) >= (8, 9)


def supports_fp8_separate(x, weight, bias=None) -> bool:
    return supports_fp8(x, weight, bias, name="vdrt-fp8-separate")


def supports_int8(x, weight, bias=None) -> bool:
    """Opt-in ("vdrt-int8" forced), eager, CUDA, bf16/fp16 x, K and N multiples of 8."""
    return _linear_ok("vdrt-int8", x, weight, bias, 8) and x.dtype in (torch.bfloat16, torch.float16)


def register_ops() -> None:
    """Register "vdrt-fp8" and "vdrt-int8" implementations of op "linear" (used only when forced)."""
    from vdrt import ops

    ops.register("linear", "vdrt-int8", linear_int8, supports=supports_int8, emulate=emulate_linear("int8"))
    ops.register("linear", "vdrt-fp8-separate", linear_fp8, supports=supports_fp8_separate,
                 emulate=emulate_linear("fp8"))
    ops.register("linear", "vdrt-fp8", linear_fp8, supports=supports_fp8, emulate=emulate_linear("fp8"))
