"""The DiT adaLN chain in one pass: residual add with gate, LayerNorm/RMSNorm, modulation, fp8.

Shapes (one alphabet): x, y (B, L, C); gate, shift, scale (B, 1, C) or (B, L, C) (any float
dtype, read through strides, so chunks of one (B, 6, C) modulation tensor need no copy);
weight, bias (C,). Per token, in fp32:
    r   = x + gate * y                  (rounded to x's dtype, as Wan's residual stream is)
    n   = LayerNorm(r) or RMSNorm(r)    (eps; optional affine weight/bias)
    out = n * (1 + scale) + shift       -> x's dtype, or fp8 e4m3 + per-token scale
Without y it is vdrt.ops.adaln_modulate: LayerNorm(x) * (1 + scale) + shift.
fp8: s = max(amax(out), 1e-12) / 448 per token, q = e4m3(out / s), so out ~ q * s (the
scales are (B, L, 1) fp32, as kernels/quant.py writes them).

Kernel: one program per token, the whole row of C (padded to a power of two, masked) in
registers, 16-byte loads; grid (B*L,).

Cost model (elem = bytes of x's dtype, M = B*L tokens; per-token shift/scale/gate add
M*C*their bytes, broadcast ones are cache hits):
    bytes moved = M*C*elem*(1 + [y] + [residual out]) + M*C*(elem, or 1 for fp8) (+ 4*M for fp8)
    FLOPs       ~ 10*M*C  (memory-bound: about 1 FLOP/byte)
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from vdrt.kernels._common import cast_out, define_op, device_ok, is_interpreted, traceable, to_e4m3

_CUDA_DTYPES = (torch.bfloat16, torch.float16)
_CPU_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_PARAM_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
MAX_C = 16384
FP8_MAX = 448.0


def reference(x, shift, scale, y=None, gate=None, weight=None, bias=None, eps=1e-6, rms=False, fp8=False):
    """Plain torch in fp32 (float64 if x is): -> (out, residual or None, fp8 scale or None)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    r = x
    if y is not None:
        r = (x.to(acc) + (gate.to(acc) if gate is not None else 1.0) * y.to(acc)).to(x.dtype)
    h = r.to(acc)
    if rms:
        n = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    else:
        n = torch.nn.functional.layer_norm(h, (h.shape[-1],), eps=eps)
    n = n * weight.to(acc) if weight is not None else n
    n = n + bias.to(acc) if bias is not None else n
    out = n * (1 + scale.to(acc)) + shift.to(acc)
    res = r if y is not None else None
    if not fp8:
        return out.to(x.dtype), res, None
    s = out.abs().amax(-1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return (out / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), res, s.float()


@triton.jit
def _adaln_kernel(
    x_ptr, y_ptr, g_ptr, sh_ptr, sc_ptr, w_ptr, b_ptr,
    out_ptr, res_ptr, qs_ptr,
    L, C, eps,
    sx_b, sx_l, sy_b, sy_l, sg_b, sg_l, ssh_b, ssh_l, ssc_b, ssc_l,
    HAS_Y: tl.constexpr, HAS_GATE: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    RMS: tl.constexpr, FP8: tl.constexpr, BLOCK_C: tl.constexpr, EMULATE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    b = row // L
    l = row % L
    c = tl.arange(0, BLOCK_C)
    m = c < C
    x = tl.load(x_ptr + b * sx_b + l * sx_l + c, mask=m, other=0.0)
    h = x.to(tl.float32)
    if HAS_Y:
        y = tl.load(y_ptr + b * sy_b + l * sy_l + c, mask=m, other=0.0).to(tl.float32)
        if HAS_GATE:
            y = y * tl.load(g_ptr + b * sg_b + l * sg_l + c, mask=m, other=0.0).to(tl.float32)
        r = cast_out(h + y, x.dtype, EMULATE)
        tl.store(res_ptr + row * C + c, r, mask=m)
        h = r.to(tl.float32)
    n = _normalize(h, m, C, eps, RMS)
    if HAS_W:
        n = n * tl.load(w_ptr + c, mask=m, other=0.0).to(tl.float32)
    if HAS_B:
        n = n + tl.load(b_ptr + c, mask=m, other=0.0).to(tl.float32)
    shift = tl.load(sh_ptr + b * ssh_b + l * ssh_l + c, mask=m, other=0.0).to(tl.float32)
    scale = tl.load(sc_ptr + b * ssc_b + l * ssc_l + c, mask=m, other=0.0).to(tl.float32)
    out = n * (1.0 + scale) + shift
    if FP8:
        s = tl.maximum(tl.max(tl.where(m, tl.abs(out), 0.0), axis=0), 1e-12) / 448.0
        tl.store(out_ptr + row * C + c, to_e4m3(out / s, EMULATE), mask=m)
        tl.store(qs_ptr + row, s)
    else:
        tl.store(out_ptr + row * C + c, cast_out(out, out_ptr.dtype.element_ty, EMULATE), mask=m)


@triton.jit
def _normalize(h, m, C, eps, RMS: tl.constexpr):
    # (BLOCK_C,) fp32, masked lanes 0 -> normalized row
    if RMS:
        return h * tl.rsqrt(tl.sum(h * h, axis=0) / C + eps)
    centered = tl.where(m, h - tl.sum(h, axis=0) / C, 0.0)
    return centered * tl.rsqrt(tl.sum(centered * centered, axis=0) / C + eps)


def _bl_strides(t: torch.Tensor | None, like: torch.Tensor) -> tuple[int, int]:
    """(batch, token) strides of a (B, L|1, C) tensor; 0 on broadcast dims."""
    if t is None:
        return 0, 0
    sb = t.stride(0) if t.shape[0] > 1 else 0
    sl = t.stride(1) if t.shape[1] > 1 else 0
    return sb, sl


def _outputs(x, has_y, fp8):
    bsz, seq, c = x.shape
    out = torch.empty((bsz, seq, c), dtype=torch.float8_e4m3fn if fp8 else x.dtype, device=x.device)
    res = torch.empty((bsz, seq, c) if has_y else (0,), dtype=x.dtype, device=x.device)
    qs = torch.empty((bsz, seq, 1) if fp8 else (0,), dtype=torch.float32, device=x.device)
    return out, res, qs


def num_warps_for(c: int) -> int:
    """About 8 elements (one 16-byte bf16 vector) per thread, 1..16 warps."""
    return max(1, min(16, triton.next_power_of_2(c) // 256))


def launch(x, shift, scale, y=None, gate=None, weight=None, bias=None, eps=1e-6, rms=False, fp8=False,
           outputs=None, wrap=None):
    """Run the kernel -> (out, residual, fp8 scales); `outputs` may be given (e.g. poisoned)."""
    bsz, seq, c = x.shape
    out, res, qs = outputs if outputs is not None else _outputs(x, y is not None, fp8)
    kernel = wrap(_adaln_kernel) if wrap else _adaln_kernel
    kernel[(bsz * seq,)](
        x, y if y is not None else x, gate if gate is not None else x, shift, scale,
        weight if weight is not None else x, bias if bias is not None else x,
        out, res if y is not None else x, qs if fp8 else x, seq, c, eps,
        *_bl_strides(x, x), *_bl_strides(y, x), *_bl_strides(gate, x),
        *_bl_strides(shift, x), *_bl_strides(scale, x),
        HAS_Y=y is not None, HAS_GATE=gate is not None, HAS_W=weight is not None,
        HAS_B=bias is not None, RMS=rms, FP8=fp8, BLOCK_C=triton.next_power_of_2(c),
        EMULATE=is_interpreted(_adaln_kernel), num_warps=num_warps_for(c),
    )
    return out, res, qs


# ---------------------------------------------------------------- custom ops


def _modulate_impl(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float,
                   weight: Optional[torch.Tensor], bias: Optional[torch.Tensor]) -> torch.Tensor:
    """vdrt::adaln_modulate: LayerNorm(x) * (1 + scale) + shift, (B, L, C) -> (B, L, C)."""
    return launch(x, shift, scale, weight=weight, bias=bias, eps=eps, wrap=lambda k: traceable(k, x))[0]


def _modulate_fake(x, shift, scale, eps, weight, bias):
    return x.new_empty(x.shape)


def _residual_impl(x: torch.Tensor, y: Optional[torch.Tensor], gate: Optional[torch.Tensor],
                   shift: torch.Tensor, scale: torch.Tensor, weight: Optional[torch.Tensor],
                   bias: Optional[torch.Tensor], eps: float, rms: bool,
                   fp8: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """vdrt::adaln_residual -> (out (B, L, C) x.dtype or e4m3, residual (B, L, C) or (0,), scales (B, L, 1) or (0,))."""
    return launch(x, shift, scale, y, gate, weight, bias, eps, rms, fp8, wrap=lambda k: traceable(k, x))


def _residual_fake(x, y, gate, shift, scale, weight, bias, eps, rms, fp8):
    bsz, seq, c = x.shape
    out = x.new_empty((bsz, seq, c), dtype=torch.float8_e4m3fn if fp8 else x.dtype)
    res = x.new_empty((bsz, seq, c) if y is not None else (0,))
    return out, res, x.new_empty((bsz, seq, 1) if fp8 else (0,), dtype=torch.float32)


adaln_modulate = define_op("vdrt::adaln_modulate", _modulate_impl, _modulate_fake, _adaln_kernel)
adaln_residual = define_op("vdrt::adaln_residual", _residual_impl, _residual_fake, _adaln_kernel)


def adaln(x, shift, scale, y=None, gate=None, weight=None, bias=None, eps=1e-6, rms=False, fp8=False):
    """The fused chain through vdrt::adaln_residual -> (out, residual or None, fp8 scales or None)."""
    out, res, qs = torch.ops.vdrt.adaln_residual(x, y, gate, shift, scale, weight, bias, eps, rms, fp8)
    return out, (res if y is not None else None), (qs if fp8 else None)


# ---------------------------------------------------------------- registry


def _row_param_ok(t, x) -> bool:
    b, seq, c = x.shape
    return (t.dim() == 3 and t.shape[0] in (1, b) and t.shape[1] in (1, seq) and t.shape[2] == c
            and t.stride(-1) == 1 and t.dtype in _PARAM_DTYPES)


def supports(x, shift, scale, eps=1e-6, weight=None, bias=None) -> bool:
    """Inputs of ops.adaln_modulate this kernel takes: (B, L, C) unit-stride C <= 16384."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.numel() == 0 or x.shape[-1] > MAX_C:
        return False
    if not (isinstance(shift, torch.Tensor) and isinstance(scale, torch.Tensor)):
        return False
    vecs = [t for t in (weight, bias) if t is not None]
    if not device_ok(x, shift, scale, *vecs) or x.stride(-1) != 1:
        return False
    if x.dtype not in (_CPU_DTYPES if x.device.type == "cpu" else _CUDA_DTYPES):
        return False
    vec_ok = all(t.shape == (x.shape[-1],) and t.stride(-1) == 1 and t.dtype in _PARAM_DTYPES for t in vecs)
    return vec_ok and _row_param_ok(shift, x) and _row_param_ok(scale, x)


def _op(x, shift, scale, eps=1e-6, weight=None, bias=None):
    return torch.ops.vdrt.adaln_modulate(x, shift, scale, eps, weight, bias)


def register_ops() -> None:
    from vdrt import ops

    ops.register("adaln_modulate", "vdrt", _op, supports=supports)
