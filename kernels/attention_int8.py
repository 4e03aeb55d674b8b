"""8-bit attention forward, SageAttention2 style: INT8 (or FP8) QK^T, FP8 (e4m3) PV, fp32 softmax.

Shapes (the one alphabet: N heads, K head dim): q (B, Lq, N, K), k and v (B, Lk, N, K) -> out (B, Lq, N, K) in q's dtype,
read through strides (D contiguous), K in {64, 128}, Lq != Lk allowed.

Steps (quantizers in `attention_quant`):
1. Q per token and head to int8, its scale times softmax-scale * log2(e) (so scores are in exp2
   units); K smoothed (K - mean_L K) and quantized per BLOCK_N rows; V per channel to e4m3,
   transposed (B, N, K, L_pad) so the PV operand is K-major (Hopper's fp8 wgmma).
2. The kernel: s = int32(q8 k8^T) * q_scale[row] * k_scale[block]. The int32 -> fp32 conversion
   is an integer add and a reinterpretation (|s| < 2**22 for D <= 128: 128 * 127 * 127 = 2.06M,
   so bits(s + 0x4B400000) is the float 2**23 + 2**22 + s exactly), which spares the quarter-rate
   I2F unit; the offset and both scales fold into one FFMA per score. Online softmax with exp2,
   P scaled by 448 onto e4m3's range inside the exponent (acc / l cancels it), acc += P8 V8 in
   fp32, out = acc / l * scale_v.
   QK_FP8 quantizes Q and K to e4m3 instead (fp32 scores straight from the tensor cores);
   PV_FP8=False keeps P V in the input dtype (bf16/fp16): GPUs without fp8 (sm < 8.9).

Cost model per call (B, N, Lq, Lk, K):
  FLOPs  = 4 * B * N * Lq * Lk * K, half of them 8-bit QK^T, half fp8 PV (Hopper: 2x bf16's rate)
  exp2   = B * N * Lq * Lk on the SFU (16/clk/SM): at D=128 it equals the 8-bit MMA time, so the
           kernel is bound by the softmax unless the two overlap.
  bytes  = quantization: read q, k, v (2 B/elt) once or twice, write 1 B/elt; kernel: codes once
           per query block (L2), out 2 B/elt.

The "vdrt-int8" implementation is opt-in: `supports` accepts only when it is the forced choice,
so "auto" never picks a lossy kernel. Its measured quality cost is in docs/quality.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from vdrt.kernels import attention_quant as AQ
from vdrt.kernels._common import cast_out, traceable, tracing
from vdrt.kernels.attention import (LOG2E, _check, _interpreting, _load_q, _op, _out, _softmax_pv,
                                    set_descriptor_allocator, tma_ok)
from vdrt.kernels.attention import reference as _dense_reference

FP8_MAX = AQ.FP8_MAX
LOG2_FP8_MAX = 8.807354922057604  # log2(448)
MAGIC = 12582912.0  # 2**23 + 2**22: float(bits(i + 0x4B400000)) - MAGIC == i for |i| < 2**22
INTERPRET_BLOCKS = (32, 16)


def reference(q, k, v, scale: float | None = None, chunk: int = 4096) -> torch.Tensor:
    """The exact attention this kernel approximates, in float64: (B, Lq, N, K) -> (B, Lq, N, K)."""
    return _dense_reference(q, k, v, scale, chunk)


def reference_quantized(q, k, v, scale=None, block_n=64, pv_fp8=True, qk="int8", centre=None) -> torch.Tensor:
    """The kernel's algorithm in float64 (no lazy rescaling): Q codes per token, K smoothed codes per
    block, online softmax over key blocks with P and V rounded as the kernel rounds them (e4m3 with
    pv_fp8, else P in q's dtype). Tests compare the kernel with it tightly: -> (B, Lq, N, K) f64. `centre`
    (B, N, K): K's centre in place of its mean (the fused rope kernel's)."""
    d, lk = q.shape[-1], k.shape[1]
    sm = (d ** -0.5 if scale is None else scale) * LOG2E
    q8, qs = AQ.reference_rows(q, qk, sm)  # (B, L, N, K), (B, N, L)
    k8, ks = AQ.reference_blocks(k, *AQ.uniform_blocks(lk, block_n, "cpu"), kind=qk, centre=centre)
    ks = ks.repeat_interleave(block_n, dim=-1)[..., :lk]
    s = torch.einsum("blhd,bmhd->bhlm", q8, k8) * qs[..., :, None] * ks[..., None, :]  # log2 units
    vd, vs = v.double(), None
    if pv_fp8:
        vs = vd.abs().amax(dim=1, keepdim=True).clamp_min(AQ.EPS) / FP8_MAX  # (B, 1, N, K)
        vd = (vd / vs).to(torch.float8_e4m3fn).double()
    m = torch.full(s.shape[:-1], float("-inf"), dtype=torch.float64)
    den, acc = torch.zeros_like(m), torch.zeros(*s.shape[:-1], d, dtype=torch.float64)
    for j in range(0, lk, block_n):
        m_new = torch.maximum(m, s[..., j : j + block_n].amax(-1))
        alpha = torch.exp2(m - m_new)
        p = torch.exp2(s[..., j : j + block_n] - m_new[..., None] + (LOG2_FP8_MAX if pv_fp8 else 0.0))
        den = den * alpha + p.sum(-1)
        p = p.to(torch.float8_e4m3fn).double() if pv_fp8 else p.to(q.dtype).double()
        acc = acc * alpha[..., None] + torch.einsum("bhlm,bmhd->bhld", p, vd[:, j : j + block_n])
        m = m_new
    out = (acc / den[..., None]).transpose(1, 2)  # (B, Lq, N, K)
    return out * vs if pv_fp8 else out


# ---------------------------------------------------------------- Triton kernel


@triton.jit
def _scores8(q, k, r, QK_FP8: tl.constexpr, INTERP: tl.constexpr):
    """(M, K) x (N_keys, K) 8-bit codes -> (M, N) fp32 scores in log2 units; r (M,) = q_scale * k_scale."""
    if QK_FP8:
        s = tl.dot(_op(q, INTERP), _op(tl.trans(k), INTERP)) * r[:, None]
    else:
        i = tl.dot(q, tl.trans(k), out_dtype=tl.int32)
        f = (i + 0x4B400000).to(tl.float32, bitcast=True)  # == MAGIC + i exactly
        s = f * r[:, None] - (r * 12582912.0)[:, None]
    return s


@triton.jit
def _load_v8(vd, V, base_v, row, stride_vl, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
             TMA: tl.constexpr, PV_FP8: tl.constexpr, L_PAD):
    """V rows [row, row + BLOCK_N) as a (BLOCK_N, K) tile: from vt (K, L_pad) e4m3, or bf16 v."""
    if PV_FP8:
        if TMA:
            vt = vd.load([0, row])
        else:
            cols = row + tl.arange(0, BLOCK_N)
            ptrs = V + base_v + tl.arange(0, HEAD_DIM)[:, None] * L_PAD + cols[None, :]
            vt = tl.load(ptrs, mask=cols[None, :] < L_PAD, other=0.0)
        v = tl.trans(vt)
    else:
        if TMA:
            v = vd.load([row, 0])
        else:
            rows = row + tl.arange(0, BLOCK_N)
            v = tl.load(V + base_v + rows[:, None] * stride_vl + tl.arange(0, HEAD_DIM)[None, :],
                        mask=rows[:, None] < L_PAD, other=0.0)
    return v


@triton.jit
def _v_desc(V, base_v, L_PAD, stride_vl, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
            TMA: tl.constexpr, PV_FP8: tl.constexpr):
    if TMA:
        if PV_FP8:
            vd = tl.make_tensor_descriptor(V + base_v, shape=[HEAD_DIM, L_PAD], strides=[L_PAD, 1],
                                           block_shape=[HEAD_DIM, BLOCK_N])
        else:
            vd = tl.make_tensor_descriptor(V + base_v, shape=[L_PAD, HEAD_DIM], strides=[stride_vl, 1],
                                           block_shape=[BLOCK_N, HEAD_DIM])
    else:
        vd = V
    return vd


@triton.jit
def _k_desc(K, base_k, Lk, stride_kl, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, TMA: tl.constexpr):
    if TMA:
        kd = tl.make_tensor_descriptor(K + base_k, shape=[Lk, HEAD_DIM], strides=[stride_kl, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])
    else:
        kd = K
    return kd


@triton.jit
def _load_k8(kd, K, base_k, row, Lk, stride_kl, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, TMA: tl.constexpr):
    if TMA:
        k = kd.load([row, 0])
    else:
        rows = row + tl.arange(0, BLOCK_N)
        k = tl.load(K + base_k + rows[:, None] * stride_kl + tl.arange(0, HEAD_DIM)[None, :],
                    mask=rows[:, None] < Lk, other=0.0)
    return k


@triton.jit
def _attn8_fwd(Q8, QS, K8, KS, V, VS, O, H, Lq, Lk, L_PAD, NB,
               stride_ql, stride_qh, stride_qb, stride_kl, stride_kh, stride_kb,
               stride_vb, stride_vl, stride_vh, stride_ob, stride_ol, stride_oh,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               QK_FP8: tl.constexpr, PV_FP8: tl.constexpr, TMA: tl.constexpr, WS: tl.constexpr,
               LAZY: tl.constexpr, INTERP: tl.constexpr):
    """Grid (cdiv(Lq, BLOCK_M), B * H). V is vt (B, N, K, L_PAD) e4m3 if PV_FP8, else v (B, Lk, N, K)
    with L_PAD = Lk. INTERP switches on the CPU-interpreter workarounds; the GPU never sets it."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b, h = pid_bh // H, pid_bh % H
    row0 = pid_m * BLOCK_M
    q = _load_q(Q8, b * stride_qb + h * stride_qh, row0, Lq, stride_ql, HEAD_DIM, BLOCK_M, TMA)
    rows = row0 + tl.arange(0, BLOCK_M)
    q_scale = tl.load(QS + pid_bh * Lq + rows, mask=rows < Lq, other=0.0)
    base_k = b * stride_kb + h * stride_kh
    kd = _k_desc(K8, base_k, Lk, stride_kl, HEAD_DIM, BLOCK_N, TMA)
    base_v = pid_bh * HEAD_DIM * L_PAD if PV_FP8 else b * stride_vb + h * stride_vh
    vd = _v_desc(V, base_v, L_PAD, stride_vl, HEAD_DIM, BLOCK_N, TMA, PV_FP8)
    p_log2: tl.constexpr = (8.807354922057604 - (8.0 if LAZY else 0.0)) if PV_FP8 else 0.0
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    ks_ptr = KS + pid_bh * NB
    n_full = Lk // BLOCK_N
    for j in tl.range(0, n_full, warp_specialize=WS):
        k = _load_k8(kd, K8, base_k, j * BLOCK_N, Lk, stride_kl, HEAD_DIM, BLOCK_N, TMA)
        s = _scores8(q, k, q_scale * tl.load(ks_ptr + j), QK_FP8, INTERP)
        v = _load_v8(vd, V, base_v, j * BLOCK_N, stride_vl, HEAD_DIM, BLOCK_N, TMA, PV_FP8, L_PAD)
        acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, s, v, LAZY, INTERP, p_log2)
    if n_full * BLOCK_N < Lk:
        k = _load_k8(kd, K8, base_k, n_full * BLOCK_N, Lk, stride_kl, HEAD_DIM, BLOCK_N, TMA)
        s = _scores8(q, k, q_scale * tl.load(ks_ptr + n_full), QK_FP8, INTERP)
        s = tl.where((n_full * BLOCK_N + tl.arange(0, BLOCK_N))[None, :] < Lk, s, float("-inf"))
        v = _load_v8(vd, V, base_v, n_full * BLOCK_N, stride_vl, HEAD_DIM, BLOCK_N, TMA, PV_FP8, L_PAD)
        acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, s, v, LAZY, INTERP, p_log2)
    out = acc / l_i[:, None]
    if PV_FP8:
        out = out * tl.load(VS + pid_bh * HEAD_DIM + tl.arange(0, HEAD_DIM))[None, :]
    o_ptrs = O + b * stride_ob + h * stride_oh + rows[:, None] * stride_ol + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(o_ptrs, cast_out(out, O.dtype.element_ty, INTERP), mask=rows[:, None] < Lq)


# ---------------------------------------------------------------- variants and launcher


@dataclass(frozen=True)
class Variant8:
    """One compiled form: tiles, launch shape, precisions and the Hopper options."""

    block_m: int = 128
    block_n: int = 64
    warps: int = 8
    stages: int = 3
    qk: str = "int8"  # "int8" | "fp8"
    pv_fp8: bool = True
    tma: bool = False
    ws: bool = False
    lazy: bool = False

    @property
    def name(self) -> str:
        flags = "".join(f"+{f}" for f in ("tma", "ws", "lazy") if getattr(self, f))
        return f"m{self.block_m}n{self.block_n}w{self.warps}s{self.stages}-{self.qk}-pv{'fp8' if self.pv_fp8 else 'bf16'}{flags}"

    def meta(self) -> dict:
        return dict(BLOCK_M=self.block_m, BLOCK_N=self.block_n, QK_FP8=self.qk == "fp8", PV_FP8=self.pv_fp8,
                    TMA=self.tma, WS=self.ws, LAZY=self.lazy, num_warps=self.warps, num_stages=self.stages)


# The GPU default: the fastest measured on the H200 (benchmarks/attention.py, 2026-11-29): 9.24 ms at
# 32760x12x128, 1.28x cuDNN (the old per-block form, m128n64w8s3 without TMA, ran 11.28 ms).
DEFAULT = Variant8(64, 128, 4, 2, tma=True)


def default_pv_fp8(device: torch.device) -> bool:
    """FP8 PV where the hardware has fp8 tensor cores (sm 8.9+) and under the interpreter."""
    if device.type != "cuda":
        return True
    return torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_inputs(q, k, v, var: Variant8, scale: float | None = None):
    """(q8, qs, k8, ks, v or vt, vs) for the kernel: see the module docstring."""
    d, lk = q.shape[-1], k.shape[1]
    sm = (d ** -0.5 if scale is None else scale) * LOG2E
    q8, qs = AQ.quantize_rows(q, var.qk, sm)
    k8, ks = AQ.quantize_blocks(k, *AQ.uniform_blocks(lk, var.block_n, k.device), var.block_n, var.qk)
    vv, vs = AQ.quantize_v(v) if var.pv_fp8 else (v, qs)
    return q8, qs, k8, ks, vv, vs


def attention_int8_fwd(q, k, v, scale: float | None = None, pv_fp8: bool | None = None,
                       variant: Variant8 | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize and launch: (B, Lq, N, K), (B, Lk, N, K) x2 -> (B, Lq, N, K) in q's dtype."""
    _check(q, k, v, "int8 attention")
    if q.numel() == 0 or k.shape[1] == 0:
        raise ValueError(f"int8 attention needs tokens; got q {tuple(q.shape)}, k {tuple(k.shape)}")
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    var = variant or (Variant8(*INTERPRET_BLOCKS, 4, 1) if _interpreting() else DEFAULT)
    if pv_fp8 is not None or variant is None:  # an explicit variant keeps its own PV precision
        var = replace(var, pv_fp8=default_pv_fp8(q.device) if pv_fp8 is None else pv_fp8)
    q8, qs, k8, ks, vv, vs = quantize_inputs(q, k, v, var, scale)
    return launch(q8, qs, k8, ks, vv, vs, _out(out, q), var)


def op_variant(device: torch.device) -> Variant8:
    """The variant the ops launch: DEFAULT on the GPU, small blocks under the interpreter; fp8 PV where the
    hardware has it. A fused producer cuts K's scale blocks to its `block_n`."""
    var = Variant8(*INTERPRET_BLOCKS, 4, 1) if _interpreting() else DEFAULT
    return replace(var, pv_fp8=default_pv_fp8(device))


def attention_int8_codes_fwd(q8, qs, k8, ks, v, pv_fp8: bool | None = None, out=None) -> torch.Tensor:
    """The kernel on codes a fused producer wrote (`vdrt.kernels.rope_quant`): q8 (B, Lq, N, K) int8 with
    scales (B, N, Lq) (softmax scale * log2 e folded in), k8 (B, Lk, N, K) int8 centred, scales (B, N, NB)
    per `op_variant(...).block_n` keys; v (B, Lk, N, K) bf16/fp16 is quantised here -> (B, Lq, N, K) in v's dtype."""
    var = op_variant(v.device)
    var = var if pv_fp8 is None else replace(var, pv_fp8=pv_fp8)
    if ks.shape[-1] != triton.cdiv(k8.shape[1], var.block_n) or q8.dtype != torch.int8 or k8.dtype != torch.int8:
        raise ValueError(f"int8 attention codes: k scales per {var.block_n} keys and int8 q/k expected; got "
                         f"k {tuple(k8.shape)} scales {tuple(ks.shape)}, q {q8.dtype}, k {k8.dtype}")
    vv, vs = AQ.quantize_v(v) if var.pv_fp8 else (v if v.stride(-1) == 1 else v.contiguous(), qs)
    out = torch.empty(q8.shape, dtype=v.dtype, device=v.device) if out is None else out
    return launch(q8, qs, k8, ks, vv, vs, out, var)


def launch(q8, qs, k8, ks, vv, vs, out, var: Variant8) -> torch.Tensor:
    """The kernel alone, on quantized inputs (as `quantize_inputs` or a fused producer makes them)."""
    b, lq, h, d = q8.shape
    lk = k8.shape[1]
    if var.tma and (not tma_ok(q8, k8, vv) or tracing(q8)):
        var = replace(var, tma=False, ws=False)
    if var.tma:
        set_descriptor_allocator()
    l_pad = vv.shape[-1] if var.pv_fp8 else lk
    vstr = (0, 0, 0) if var.pv_fp8 else vv.stride()[:3]
    args = (q8, qs, k8, ks, vv, vs, out, h, lq, lk, l_pad, ks.shape[-1],
            q8.stride(1), q8.stride(2), q8.stride(0), k8.stride(1), k8.stride(2), k8.stride(0),
            *vstr, *out.stride()[:3])
    grid = (triton.cdiv(lq, var.block_m), b * h)
    traceable(_attn8_fwd, *args)[grid](*args, HEAD_DIM=d, INTERP=_interpreting(), **var.meta())
    return out


# ---------------------------------------------------------------- torch.library op


@triton_op("vdrt::attention_int8", mutates_args=())
def attention_int8(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                   pv_fp8: bool | None = None) -> torch.Tensor:
    """vdrt::attention_int8: (B, Lq, N, K), (B, Lk, N, K) x2 -> (B, Lq, N, K)."""
    return attention_int8_fwd(q, k, v, scale, pv_fp8)


@attention_int8.register_fake
def _attention_int8_fake(q, k, v, scale=None, pv_fp8=None):
    return q.new_empty(q.shape)


@triton_op("vdrt::attention_int8_codes", mutates_args=())
def attention_int8_codes(q8: torch.Tensor, qs: torch.Tensor, k8: torch.Tensor, ks: torch.Tensor,
                         v: torch.Tensor) -> torch.Tensor:
    """vdrt::attention_int8_codes: pre-quantised q/k (see `attention_int8_codes_fwd`) -> (B, Lq, N, K)."""
    return attention_int8_codes_fwd(q8, qs, k8, ks, v)


@attention_int8_codes.register_fake
def _attention_int8_codes_fake(q8, qs, k8, ks, v):
    return v.new_empty((*q8.shape[:-1], v.shape[-1]))


def emulate(q, k, v, centre=None) -> torch.Tensor:
    """The kernel's numerics in torch, fast enough for the quality oracle on a CPU: the same int8 codes
    of Q (per token, softmax scale folded) and smoothed K (per block), e4m3 V per channel and P scaled
    onto e4m3 (448 * exp2(s - m)), in float32 with one pass (the row max over all keys, where the
    kernel's online softmax uses the running max: P's rounding grid differs slightly). In q's dtype:
    what a forced "vdrt-int8" computes on CPU tensors, so its quality can be measured there. `centre`
    (B, N, K): K's centre in place of its exact mean (the fused rope kernel's, `rope_quant.centre_of`)."""
    if q.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        from vdrt import ops

        return ops.attention_torch(q, k, v)
    d, lk = q.shape[-1], k.shape[1]
    q8, qs = AQ.reference_rows(q.float(), "int8", LOG2E * d ** -0.5)  # (B, L, N, K), (B, N, L)
    k8, ks = AQ.reference_blocks(k.float(), *AQ.uniform_blocks(lk, DEFAULT.block_n, "cpu"), kind="int8",
                                 centre=centre)
    ks = ks.repeat_interleave(DEFAULT.block_n, dim=-1)[..., :lk]  # (B, N, Lk)
    s = torch.einsum("blnk,bmnk->bnlm", q8.float(), k8.float()) * qs.float()[..., :, None] * ks.float()[..., None, :]
    p = torch.exp2(s - s.amax(-1, keepdim=True) + LOG2_FP8_MAX)
    vs = v.float().abs().amax(dim=1, keepdim=True).clamp_min(AQ.EPS) / FP8_MAX  # (B, 1, N, K)
    v8 = (v.float() / vs).to(torch.float8_e4m3fn).float()
    out = torch.einsum("bnlm,bmnk->blnk", p.to(torch.float8_e4m3fn).float(), v8) / p.sum(-1).transpose(1, 2)[..., None]
    return (out * vs).to(q.dtype)


def supports(q, k, v, *args, **kwargs) -> bool:
    """Opt-in only (forced "vdrt-int8"); CUDA sm80+, one dtype in {bf16, fp16}, K in {64, 128}."""
    from vdrt import ops
    from vdrt.kernels.attention import supports as dense_supports

    return ops.get_choice("attention") == "vdrt-int8" and dense_supports(q, k, v, *args, **kwargs)


def register_ops() -> None:
    """Register implementation "vdrt-int8" of op "attention" (used only when forced)."""
    from vdrt import ops

    ops.register("attention", "vdrt-int8", lambda q, k, v: torch.ops.vdrt.attention_int8(q, k, v),
                 supports=supports, emulate=emulate)
