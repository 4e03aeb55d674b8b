"""Temporal attention: softmax(q k^T / sqrt(D)) v over the frame axis, in the native layout.

Shapes (one alphabet): q, k, v (B, F, S, H, D) -> o (B, F, S, H, D). Attention runs over F
(T = F frames) independently for each of the N = B*S*H sequences (b, s, h). q, k and v are
read through their strides, so views of one fused qkv projection (B, F, S, 3, H, D) need no
permute copy; only the head dim must be unit-stride. o is written contiguous.

Kernel: one program takes BLOCK_M consecutive sequences (flattened (b, s, h), so the tile of
one frame is BLOCK_M*D contiguous elements for a contiguous input) and all T frames. It loads
q, k, v tiles (BLOCK_M, T_PAD, D_PAD) once (16-byte vectors along D when strides allow), does
two batched tensor-core dots (BLOCK_M, T_PAD, D_PAD) x (BLOCK_M, D_PAD, T_PAD) and
(BLOCK_M, T_PAD, T_PAD) x (BLOCK_M, T_PAD, D_PAD) with the T x T scores in registers, fp32
accumulation and an exact (single pass) softmax, and stores o once. Padding (T to >= 16,
D to a power of two) is masked: it costs compute, never bytes. The grid is 1-D over
cdiv(N, BLOCK_M) programs (axis 0 allows 2^31 - 1), so N >= 2^17 is fine.

Cost model (elem = bytes per element, 2 for bf16/fp16):
    FLOPs       = 4 * N * T * T * D               (q k^T and p v, 2 FLOPs per MAC)
    bytes moved = 4 * N * T * D * elem            (read q, k, v and write o once)
    intensity   = T / (2 * elem) FLOP/byte        (4 for T = 16 in bf16: memory-bound on H100)
The floor is bytes / copy bandwidth (3.0 TB/s on the H100).
"""
from __future__ import annotations

import logging
import math

import torch
import triton
import triton.language as tl

from vdrt.kernels._common import cast_out, define_op, device_ok, is_interpreted, traceable

log = logging.getLogger(__name__)

MAX_T = 64
MAX_D = 128
_CUDA_DTYPES = (torch.bfloat16, torch.float16)
_CPU_DTYPES = (torch.bfloat16, torch.float16, torch.float32)  # the interpreter


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain torch, computed in q's dtype: (B, F, S, H, D) x3 -> (B, F, S, H, D)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = torch.einsum("bfshd,bgshd->bshfg", q, k) * scale  # (B, S, H, F, F)
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bshfg,bgshd->bfshd", p, v)


@triton.jit
def _dot(a, b, DOT_PREC: tl.constexpr, UPCAST: tl.constexpr):
    # UPCAST (interpreter only): its bf16 dot multiplies raw bits, so operands go to fp32 (exact)
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=DOT_PREC)


@triton.jit
def _attend_3d(q, k, v, key_ok, qk_scale, DOT_PREC: tl.constexpr, UPCAST: tl.constexpr):
    # (M, T, D) x3 -> (M, T, D) fp32; scores (M, T, T) stay in registers
    scores = _dot(q, tl.permute(k, (0, 2, 1)), DOT_PREC, UPCAST)
    scores = tl.where(key_ok, scores * qk_scale, float("-inf"))
    p = tl.exp2(scores - tl.max(scores, axis=2)[:, :, None])
    o = _dot(cast_out(p, v.dtype, UPCAST), v, DOT_PREC, UPCAST)
    return o / tl.sum(p, axis=2)[:, :, None]


@triton.jit
def _attend_2d(q, k, v, key_ok, qk_scale, DOT_PREC: tl.constexpr, UPCAST: tl.constexpr):
    # (T, D) x3 -> (T, D) fp32
    scores = _dot(q, tl.trans(k), DOT_PREC, UPCAST)
    scores = tl.where(key_ok, scores * qk_scale, float("-inf"))
    p = tl.exp2(scores - tl.max(scores, axis=1)[:, None])
    o = _dot(cast_out(p, v.dtype, UPCAST), v, DOT_PREC, UPCAST)
    return o / tl.sum(p, axis=1)[:, None]


@triton.jit
def _temporal_attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,
    n_seq, S, H,
    sq_b, sq_f, sq_s, sq_h,
    sk_b, sk_f, sk_s, sk_h,
    sv_b, sv_f, sv_s, sv_h,
    so_b, so_f, so_s, so_h,
    qk_scale,
    T: tl.constexpr, HEAD_DIM: tl.constexpr, T_PAD: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, VEC: tl.constexpr, DOT_PREC: tl.constexpr, UPCAST: tl.constexpr,
):
    # strides arrive divided by VEC, so every row start is a multiple of VEC elements
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    h = rows % H
    s = (rows // H) % S
    b = rows // (H * S)
    t = tl.arange(0, T_PAD)
    d = tl.arange(0, D_PAD)
    mask = (rows < n_seq)[:, None, None] & (t < T)[None, :, None] & (d < HEAD_DIM)[None, None, :]
    tt = t[None, :, None].to(tl.int64)
    dd = d[None, None, :]
    q_off = ((b * sq_b + s * sq_s + h * sq_h)[:, None, None] + tt * sq_f) * VEC + dd
    k_off = ((b * sk_b + s * sk_s + h * sk_h)[:, None, None] + tt * sk_f) * VEC + dd
    v_off = ((b * sv_b + s * sv_s + h * sv_h)[:, None, None] + tt * sv_f) * VEC + dd
    q = tl.load(q_ptr + q_off, mask=mask, other=0.0)  # (BLOCK_M, T_PAD, D_PAD)
    k = tl.load(k_ptr + k_off, mask=mask, other=0.0)
    v = tl.load(v_ptr + v_off, mask=mask, other=0.0)
    key_ok = (t < T)[None, :]
    if BLOCK_M == 1:  # one long sequence: 2-D dots spread the warps over frames
        o = _attend_2d(tl.reshape(q, (T_PAD, D_PAD)), tl.reshape(k, (T_PAD, D_PAD)),
                       tl.reshape(v, (T_PAD, D_PAD)), key_ok, qk_scale, DOT_PREC, UPCAST)
        o = tl.reshape(o, (1, T_PAD, D_PAD))
    else:  # batched dots: each warp owns whole sequences
        o = _attend_3d(q, k, v, key_ok[None, :, :], qk_scale, DOT_PREC, UPCAST)
    o_off = ((b * so_b + s * so_s + h * so_h)[:, None, None] + tt * so_f) * VEC + dd
    tl.store(o_ptr + o_off, cast_out(o, o_ptr.dtype.element_ty, UPCAST), mask=mask)


def _pow2(x: int, lo: int) -> int:
    return max(lo, triton.next_power_of_2(x))


def launch_config(t: int, d: int) -> tuple[int, int]:
    """(BLOCK_M, num_warps) for T frames and head dim d.

    Triton's batched dot puts warps on the batch axis, so BLOCK_M = num_warps (one sequence
    per warp) for T_PAD <= 32 and up to 4096 padded elements per sequence (no spills on
    sm_90 with Triton 3.6-3.9, 24-96 KB of q/k/v in flight per program); longer sequences
    take one per program with 2-D dots (wgmma on Hopper).
    """
    tp, dp = _pow2(t, 16), _pow2(d, 16)
    if tp <= 32 and tp * dp <= 4096:
        # H100, 2026-11-23: 4 sequences x 4 warps was fastest or tied at all four benchmark shapes
        # (e.g. 9216x5x25x64: 0.207 ms vs 0.232 for 8x8; 2048x16x16x72: 0.117 vs 0.138)
        return 4, 4
    return 1, (4 if tp * dp <= 4096 else 8)


def _vec(*tensors: torch.Tensor) -> int:
    """8 when every row start is a multiple of 8 elements (16-byte loads), else 1.

    Base pointers are not checked: Triton specializes on their 16-byte alignment itself.
    """
    return 1 if any(st % 8 for x in tensors for st in x.stride()[:-1]) else 8


def _strides(x: torch.Tensor, vec: int) -> list[int]:
    sb, sf, ss, sh, _ = x.stride()
    return [sb // vec, sf // vec, ss // vec, sh // vec]


def launch(q, k, v, out=None, block_m: int | None = None, num_warps: int | None = None, wrap=None):
    """Run the kernel; `out` (contiguous, shape of q) may be given, e.g. poisoned for tests."""
    b, f, s, h, d = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device) if out is None else out
    bm, nw = launch_config(f, d)
    bm, nw = block_m or bm, num_warps or nw
    vec = _vec(q, k, v, out)
    kernel = wrap(_temporal_attention_kernel) if wrap else _temporal_attention_kernel
    n_seq = b * s * h
    kernel[(triton.cdiv(n_seq, bm),)](
        q, k, v, out, n_seq, s, h,
        *_strides(q, vec), *_strides(k, vec), *_strides(v, vec), *_strides(out, vec),
        math.log2(math.e) / math.sqrt(d),
        T=f, HEAD_DIM=d, T_PAD=_pow2(f, 16), D_PAD=_pow2(d, 16),
        BLOCK_M=bm, VEC=vec, DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32",
        UPCAST=is_interpreted(_temporal_attention_kernel),
        num_warps=nw,
    )
    return out


def _op_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, F, S, H, D) x3 -> (B, F, S, H, D); the body of the custom op vdrt::temporal_attention."""
    return launch(q, k, v, wrap=lambda k: traceable(k, q))


def _op_fake(q, k, v):
    return q.new_empty(q.shape)


temporal_attention = define_op("vdrt::temporal_attention", _op_impl, _op_fake, _temporal_attention_kernel)


def supports(q, k, v) -> bool:
    """Inputs this kernel takes: same shape/dtype/device, T <= 64, D <= 128, unit-stride D.

    bf16/fp16 on CUDA; fp32 too under the CPU interpreter (tests).
    """
    if not all(isinstance(x, torch.Tensor) for x in (q, k, v)) or q.dim() != 5 or q.numel() == 0:
        return False
    if not (q.shape == k.shape == v.shape and q.dtype == k.dtype == v.dtype and device_ok(q, k, v)):
        return False
    if q.dtype not in (_CPU_DTYPES if q.device.type == "cpu" else _CUDA_DTYPES):
        return False
    _, f, _, _, d = q.shape
    return f <= MAX_T and d <= MAX_D and all(x.stride(-1) == 1 for x in (q, k, v))


def _op(q, k, v):
    return torch.ops.vdrt.temporal_attention(q, k, v)


def register_ops() -> None:
    """Register the CUDA (NVRTC) kernel as "cuda" where it can load, then this one as "vdrt".

    The registry tries later registrations first, so "auto" picks the Triton kernel (which
    torch.compile/export can see); `ops.use(temporal_attention="cuda")` forces the other.
    """
    from vdrt import ops

    try:
        from vdrt.cuda import temporal_attention as cuda_ta
    except ImportError as e:  # cuda-python missing: the registry keeps the others
        log.debug("CUDA temporal attention not registered: %s", e)
    else:
        cuda_ta.register_ops()
    ops.register("temporal_attention", "vdrt", _op, supports=supports)
