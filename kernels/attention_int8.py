"""8-bit attention forward, SageAttention2 style: INT8 QK^T, FP8 (e4m3) PV, fp32 softmax.

Shapes (one alphabet): q (B, Lq, H, D), k and v (B, Lk, H, D) -> out (B, Lq, H, D) in q's dtype,
read through strides (D contiguous), D in {64, 128}, Lq != Lk allowed.

Steps:
1. K smoothing: K <- K - mean_L(K) per (batch, head). Softmax is invariant to adding the same
   q.mean(K) to every score of a row, so the result is unchanged while K's outliers shrink.
2. Per-block INT8 quantization (`_quant_int8_kernel`): Q per BLOCK_M tokens, K per BLOCK_N
   tokens, scale = amax / 127, round half away from zero. Q's scale also carries the softmax
   scale * log2(e), so the kernel's dequantized scores feed exp2 directly. Written head-major
   (B, H, L_pad, D) with zero padding, so the attention kernel loads tiles without masks.
3. V to FP8 per channel (`_quant_v_fp8_kernel`): scale_v[b, h, d] = amax_L |v| / 448, written
   transposed (B, H, D, Lk_pad) so that the PV operand is K-major, as Hopper's fp8 wgmma wants.
4. The attention kernel: s = int32(q8 k8^T) * q_scale * k_scale (fp32), online softmax with exp2,
   P (in [0, 1]) scaled by 448 into e4m3, acc += P8 V8 (fp32), out = acc / l * scale_v / 448.
   `PV_FP8=False` keeps P V in the input dtype (bf16/fp16) instead: GPUs without fp8 (sm < 8.9)
   and a reference path for tests.

Cost model per call (B, H, Lq, Lk, D):
  FLOPs  = 4 * B * H * Lq * Lk * D, half of them int8 (QK^T), half fp8 (PV)
  bytes  = quantization: read q, k, v twice-ish (2 bytes/elt) and write 1 byte/elt;
           kernel: q8 once, k8 and v8 once per query block (L2), out 2 bytes/elt.
Hopper has 2x the dense 8-bit tensor throughput of bf16 (1979 vs 989 TFLOP/s peak).

The step policy (`Int8StepPolicy`, `int8_attention_steps`) tells a sampling loop which steps
may use this lossy kernel: the first and last steps are the most sensitive and stay in bf16.
The "vdrt-int8" implementation is opt-in: `supports` accepts only when it is the forced choice,
so "auto" never picks a lossy kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from vdrt.kernels._common import traceable
from vdrt.kernels.attention import LOG2E, _check, _interpreting, _op, _out
from vdrt.kernels.attention import reference as _dense_reference
from vdrt.kernels._common import cast_out, to_e4m3
from vdrt.kernels.quant import to_int8

FP8_MAX = 448.0
INT8_MAX = 127.0
EPS = 1e-8  # smallest amax used for a scale: all-zero blocks quantize to 0 without NaN
GPU_BLOCKS = (128, 64)  # (BLOCK_M, BLOCK_N): the quantization granularity of Q and K
INTERPRET_BLOCKS = (32, 16)


def reference(q, k, v, scale: float | None = None, chunk: int = 4096) -> torch.Tensor:
    """The exact attention this kernel approximates, in float64: (B, Lq, H, D) -> (B, Lq, H, D)."""
    return _dense_reference(q, k, v, scale, chunk)


def reference_quantized(q, k, v, scale=None, block_m=128, block_n=64, pv_fp8=True) -> torch.Tensor:
    """The kernel's algorithm in float64, block by block: int8 Q / K codes with per-block scales,
    online softmax over key blocks, P and V rounded as the kernel rounds them (e4m3 with pv_fp8,
    else P to q's dtype). Tests compare the kernel with it tightly: (B, Lq, H, D) -> float64."""
    d, lk = q.shape[-1], k.shape[1]
    sm = (d ** -0.5 if scale is None else scale) * LOG2E
    kd, vd = k.double(), v.double()
    q8, qs = _ref_block_quant(q.double(), block_m)
    k8, ks = _ref_block_quant(kd - kd.mean(dim=1, keepdim=True), block_n)
    s = torch.einsum("blhd,bmhd->bhlm", q8, k8) * (qs[..., :, None] * sm) * ks[..., None, :]  # log2 units
    if pv_fp8:
        vs = vd.abs().amax(dim=1, keepdim=True).clamp_min(EPS) / FP8_MAX  # (B, 1, H, D)
        vd = (vd / vs).to(torch.float8_e4m3fn).double()
    m = torch.full(s.shape[:-1], float("-inf"), dtype=torch.float64)
    den, acc = torch.zeros_like(m), torch.zeros(*s.shape[:-1], d, dtype=torch.float64)
    for j in range(0, lk, block_n):
        m_new = torch.maximum(m, s[..., j : j + block_n].amax(-1))
        p = torch.exp2(s[..., j : j + block_n] - m_new[..., None])
        alpha = torch.exp2(m - m_new)
        den = den * alpha + p.sum(-1)
        p = (p * FP8_MAX).to(torch.float8_e4m3fn).double() / FP8_MAX if pv_fp8 else p.to(q.dtype).double()
        acc = acc * alpha[..., None] + torch.einsum("bhlm,bmhd->bhld", p, vd[:, j : j + block_n])
        m = m_new
    out = (acc / den[..., None]).transpose(1, 2)  # (B, Lq, H, D)
    return out * vs if pv_fp8 else out


def _ref_block_quant(x: torch.Tensor, block: int):
    """(B, L, H, D) fp32 -> int values as fp32 (B, L, H, D), scales (B, H, L) (one per block)."""
    b, n, h, d = x.shape
    pad = (-n) % block
    xp = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)).view(b, -1, block, h, d)
    amax = xp.abs().amax(dim=(2, 4)).clamp_min(EPS)  # (B, NB, H)
    sc = amax / INT8_MAX
    xq = xp / sc[:, :, None, :, None]
    xq = torch.trunc(xq + 0.5 * torch.sign(xq)).clamp(-INT8_MAX, INT8_MAX)
    xq = xq.view(b, -1, h, d)[:, :n]
    return xq, sc.repeat_interleave(block, dim=1)[:, :n].transpose(1, 2)


# ---------------------------------------------------------------- Triton kernels


@triton.jit
def _quant_int8_kernel(X, Mean, Xq, Scale, H, L, L_pad, extra_scale,
                       stride_xb, stride_xl, stride_xh, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
                       HAS_MEAN: tl.constexpr):
    """Grid (L_pad / BLOCK, B * H): x (B, L, H, D) -> xq (B, H, L_pad, D) int8, scale (B, H, NB)."""
    pid_l = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    offs_l = pid_l * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    valid = offs_l[:, None] < L
    x = tl.load(X + b * stride_xb + h * stride_xh + offs_l[:, None] * stride_xl + offs_d[None, :],
                mask=valid, other=0.0).to(tl.float32)
    if HAS_MEAN:
        mean = tl.load(Mean + pid_bh.to(tl.int64) * HEAD_DIM + offs_d)
        x = tl.where(valid, x - mean[None, :], 0.0)
    scale = tl.maximum(tl.max(tl.max(tl.abs(x), 1), 0), 1e-8) / 127.0
    row = pid_bh.to(tl.int64) * L_pad + offs_l
    tl.store(Xq + row[:, None] * HEAD_DIM + offs_d[None, :], to_int8(x / scale))
    tl.store(Scale + pid_bh.to(tl.int64) * tl.num_programs(0) + pid_l, scale * extra_scale)


@triton.jit
def _quant_v_fp8_kernel(V, VScale, Vt, H, L, L_pad, stride_vb, stride_vl, stride_vh,
                        HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, EMULATE: tl.constexpr):
    """Grid (L_pad / BLOCK, B * H): v (B, L, H, D) -> vt (B, H, D, L_pad) e4m3 = v / scale_v."""
    pid_l = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    offs_l = pid_l * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    v = tl.load(V + b * stride_vb + h * stride_vh + offs_l[:, None] * stride_vl + offs_d[None, :],
                mask=offs_l[:, None] < L, other=0.0).to(tl.float32)
    vs = tl.load(VScale + pid_bh.to(tl.int64) * HEAD_DIM + offs_d)
    base = Vt + pid_bh.to(tl.int64) * HEAD_DIM * L_pad
    tl.store(base + offs_d[None, :] * L_pad + offs_l[:, None], to_e4m3(v / vs[None, :], EMULATE))


@triton.jit
def _int8_inner(acc, l_i, m_i, q, q_scale, k_ptrs, ks_ptr, v_ptrs, v_step, start, stop, Lk,
                HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr, PV_FP8: tl.constexpr,
                INTERP: tl.constexpr):
    """Online softmax over key blocks [start, stop); MASK gives padded keys of the last block -inf."""
    offs_n = tl.arange(0, BLOCK_N)
    blk = start // BLOCK_N
    k_ptrs += blk * BLOCK_N * HEAD_DIM
    ks_ptr += blk
    v_ptrs += blk * v_step
    for s0 in range(start, stop, BLOCK_N):
        k = tl.load(k_ptrs)
        s = tl.dot(q, tl.trans(k), out_dtype=tl.int32).to(tl.float32) * (q_scale * tl.load(ks_ptr))
        if MASK:
            s = tl.where((s0 + offs_n)[None, :] < Lk, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        if PV_FP8:
            if INTERP:
                p8 = to_e4m3(p * 448.0, True)
            else:
                p8 = (p * 448.0).to(tl.float8e4nv)  # p <= 1: in range, no clamp needed
            pv = tl.dot(p8, tl.trans(tl.load(v_ptrs)))
        else:
            if MASK:
                v = tl.load(v_ptrs, mask=(s0 + offs_n)[:, None] < Lk, other=0.0)
            else:
                v = tl.load(v_ptrs)
            pv = tl.dot(_op(cast_out(p, v.dtype, INTERP), INTERP), _op(v, INTERP))
        acc = acc * alpha[:, None] + pv
        m_i = m_new
        k_ptrs += BLOCK_N * HEAD_DIM
        ks_ptr += 1
        v_ptrs += v_step
    return acc, l_i, m_i


@triton.jit
def _attn_int8_fwd(Q8, QS, K8, KS, V, VS, O, H, Lq, Lk, Lq_pad, Lk_pad,
                   stride_vb, stride_vl, stride_vh, stride_ob, stride_ol, stride_oh,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   PV_FP8: tl.constexpr, INTERP: tl.constexpr):
    """Grid (Lq_pad / BLOCK_M, B * H). V is vt (B, H, D, Lk_pad) e4m3 if PV_FP8, else v (B, Lk, H, D).

    INTERP switches on the CPU-interpreter workarounds (exact fp32 dots for bf16, emulated fp8
    and bf16 rounding); the GPU never sets it.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_base = Q8 + pid_bh * Lq_pad * HEAD_DIM  # int64 scalar bases, int32 tile offsets
    q = tl.load(q_base + offs_m[:, None] * HEAD_DIM + offs_d[None, :])
    q_scale = tl.load(QS + pid_bh * tl.num_programs(0) + pid_m)
    k_ptrs = (K8 + pid_bh * Lk_pad * HEAD_DIM) + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    ks_ptr = KS + pid_bh * (Lk_pad // BLOCK_N)
    if PV_FP8:
        v_ptrs = (V + pid_bh * HEAD_DIM * Lk_pad) + offs_d[:, None] * Lk_pad + offs_n[None, :]  # (D, N)
        v_step = BLOCK_N
    else:
        v_ptrs = V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vl + offs_d[None, :]
        v_step = BLOCK_N * stride_vl
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    n_full = (Lk // BLOCK_N) * BLOCK_N
    acc, l_i, m_i = _int8_inner(acc, l_i, m_i, q, q_scale, k_ptrs, ks_ptr, v_ptrs, v_step, 0, n_full, Lk,
                                HEAD_DIM, BLOCK_N, False, PV_FP8, INTERP)
    if n_full < Lk:
        acc, l_i, m_i = _int8_inner(acc, l_i, m_i, q, q_scale, k_ptrs, ks_ptr, v_ptrs, v_step, n_full,
                                    Lk, Lk, HEAD_DIM, BLOCK_N, True, PV_FP8, INTERP)
    out = acc / l_i[:, None]
    if PV_FP8:
        out = out * (tl.load(VS + pid_bh * HEAD_DIM + offs_d) / 448.0)[None, :]
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ol + offs_d[None, :]
    tl.store(o_ptrs, cast_out(out, O.dtype.element_ty, INTERP), mask=offs_m[:, None] < Lq)


_TUNE = [triton.Config({}, num_warps=w, num_stages=s) for w, s in ((8, 3), (8, 4), (4, 3))]
_attn_int8_fwd_tuned = triton.autotune(configs=_TUNE, key=["HEAD_DIM", "Lq", "Lk", "PV_FP8"])(_attn_int8_fwd)


# ---------------------------------------------------------------- launchers


def _pad(n: int, block: int) -> int:
    return triton.cdiv(n, block) * block


def _warps(block: int, d: int) -> int:
    return 8 if block * d >= 16384 else 4


def quantize_qk(x, block: int, mean=None, extra_scale: float = 1.0):
    """(B, L, H, D) -> int8 (B, H, L_pad, D), fp32 scales (B, H, L_pad / block); mean (B, H, D) fp32."""
    b, n, h, d = x.shape
    n_pad = _pad(n, block)
    xq = torch.empty((b, h, n_pad, d), dtype=torch.int8, device=x.device)
    scale = torch.empty((b, h, n_pad // block), dtype=torch.float32, device=x.device)
    grid = (n_pad // block, b * h)
    traceable(_quant_int8_kernel, x)[grid](
        x, mean if mean is not None else scale, xq, scale, h, n, n_pad, extra_scale,
        x.stride(0), x.stride(1), x.stride(2), HEAD_DIM=d, BLOCK=block, HAS_MEAN=mean is not None,
        num_warps=_warps(block, d))
    return xq, scale


def quantize_v_fp8(v, block: int):
    """(B, L, H, D) -> e4m3 (B, H, D, L_pad) transposed, fp32 per-channel scales (B, H, D)."""
    b, n, h, d = v.shape
    n_pad = _pad(n, block)
    lo, hi = torch.aminmax(v, dim=1)  # (B, H, D) each, no fp32 copy of v
    vscale = (torch.maximum(hi.float(), -lo.float()).clamp_min(EPS) / FP8_MAX).contiguous()
    vt = torch.empty((b, h, d, n_pad), dtype=torch.float8_e4m3fn, device=v.device)
    traceable(_quant_v_fp8_kernel, v)[(n_pad // block, b * h)](
        v, vscale, vt, h, n, n_pad, v.stride(0), v.stride(1), v.stride(2), HEAD_DIM=d, BLOCK=block,
        EMULATE=_interpreting(), num_warps=_warps(block, d))
    return vt, vscale


def default_pv_fp8(device: torch.device) -> bool:
    """FP8 PV where the hardware has fp8 tensor cores (sm 8.9+) and under the interpreter."""
    if device.type != "cuda":
        return True
    return torch.cuda.get_device_capability(device) >= (8, 9)


def attention_int8_fwd(q, k, v, scale: float | None = None, pv_fp8: bool | None = None,
                       block_m: int | None = None, block_n: int | None = None,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize and launch: (B, Lq, H, D), (B, Lk, H, D) x2 -> (B, Lq, H, D) in q's dtype.

    block_m / block_n set the quantization blocks of Q and K (defaults GPU_BLOCKS, or
    INTERPRET_BLOCKS under the interpreter); `out` receives the result if given.
    """
    _check(q, k, v, "int8 attention")
    if q.numel() == 0 or k.shape[1] == 0:
        raise ValueError(f"int8 attention needs tokens; got q {tuple(q.shape)}, k {tuple(k.shape)}")
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    b, lq, h, d = q.shape
    lk = k.shape[1]
    pv_fp8 = default_pv_fp8(q.device) if pv_fp8 is None else pv_fp8
    bm, bn = INTERPRET_BLOCKS if _interpreting() else GPU_BLOCKS
    bm, bn = block_m or bm, block_n or bn
    sm = (d ** -0.5 if scale is None else scale) * LOG2E
    q8, qs = quantize_qk(q, bm, extra_scale=sm)
    k8, ks = quantize_qk(k, bn, mean=k.mean(dim=1, dtype=torch.float32).contiguous())
    if pv_fp8:
        vv, vs = quantize_v_fp8(v, bn)
    else:
        vv, vs = v, qs  # vs unused
    out = _out(out, q)
    args = (q8, qs, k8, ks, vv, vs, out, h, lq, lk, q8.shape[2], k8.shape[2], v.stride(0), v.stride(1),
            v.stride(2), out.stride(0), out.stride(1), out.stride(2))
    meta = dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, PV_FP8=pv_fp8)
    grid = (q8.shape[2] // bm, b * h)
    if _interpreting():
        traceable(_attn_int8_fwd, *args)[grid](*args, **meta, INTERP=True)
    else:
        traceable(_attn_int8_fwd_tuned, *args)[grid](*args, **meta, INTERP=False)
    return out


# ---------------------------------------------------------------- torch.library op


@triton_op("vdrt::attention_int8", mutates_args=())
def attention_int8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                   pv_fp8: bool | None = None) -> torch.Tensor:
    """vdrt::attention_int8: (B, Lq, H, D), (B, Lk, H, D) x2 -> (B, Lq, H, D)."""
    return attention_int8_fwd(q, k, v, scale, pv_fp8)


@attention_int8.register_fake
def _attention_int8_fake(q, k, v, scale=None, pv_fp8=None):
    return q.new_empty(q.shape)


# ---------------------------------------------------------------- step policy and registry


@dataclass(frozen=True)
class Int8StepPolicy:
    """Which sampling steps may use 8-bit attention: all but the first `first` and last `last`.

    A sampling loop asks `policy.choice(i, num_steps)` for the attention implementation of
    step i and runs the denoiser under `vdrt.ops.use(attention=...)`.
    """

    first: int = 1
    last: int = 1
    fallback: str = "auto"

    def use_int8(self, step: int, num_steps: int) -> bool:
        return self.first <= step < num_steps - self.last

    def choice(self, step: int, num_steps: int) -> str:
        return "vdrt-int8" if self.use_int8(step, num_steps) else self.fallback


def int8_attention_steps(first: int = 1, last: int = 1) -> Int8StepPolicy:
    """The policy keeping the first `first` and last `last` sampling steps in bf16 attention."""
    if first < 0 or last < 0:
        raise ValueError(f"first and last must be >= 0, got {first}, {last}")
    return Int8StepPolicy(first, last)


def supports(q, k, v, *args, **kwargs) -> bool:
    """Opt-in only (forced "vdrt-int8"); CUDA sm80+, one dtype in {bf16, fp16}, D in {64, 128}."""
    from vdrt import ops
    from vdrt.kernels.attention import supports as dense_supports

    return ops.get_choice("attention") == "vdrt-int8" and dense_supports(q, k, v, *args, **kwargs)


def register_ops() -> None:
    """Register implementation "vdrt-int8" of op "attention" (used only when forced)."""
    from vdrt import ops

    ops.register("attention", "vdrt-int8", lambda q, k, v: torch.ops.vdrt.attention_int8(q, k, v),
                 supports=supports)
