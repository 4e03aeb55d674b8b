"""Wan's QK path fused: RMSNorm across heads, then 3-D rotary position embedding.

Shapes (one alphabet): x (B, L, H*D) with L = F*Hg*Wg tokens in (frame, row, column) order
(the patch grid), weight (H*D,) -> out (B, L, H, D).
    n   = x * rsqrt(mean(x^2 over H*D) + eps) * weight        (fp32)
    out = rope(n): pair (n[2i], n[2i+1]) of each head rotated by angle pos * theta^(-2j/band)
The head dim is split into three frequency bands, as Wan's WanRotaryPosEmbed: frames get
D - 4*(D//6) dims, rows and columns 2*(D//6) each; pair i of a head falls in one band, with
j its index inside the band and pos the token's frame, row or column. cos/sin are computed
in the kernel (fp32), so no (L, D) tables are read.

Kernel: one program per token: the row of H*D is loaded and stored flat (16-byte vectors)
and viewed as (pairs, 2) in registers for the rotation; grid (B*L,).

Cost model (elem = bytes of x's dtype, M = B*L tokens, E = H*D):
    bytes moved = 2*M*E*elem + E*4 (weight, a cache hit)
    FLOPs       ~ 8*M*E, plus M*E sin/cos on the SFU: memory-bound
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from vdrt.kernels._common import cast_out, define_op, device_ok, is_interpreted, traceable

_CUDA_DTYPES = (torch.bfloat16, torch.float16)
_CPU_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
MAX_E = 16384


def band_dims(d: int) -> tuple[int, int, int]:
    """(frames, rows, columns) dims of a head dim d, as Wan splits it."""
    hw = 2 * (d // 6)
    return d - 2 * hw, hw, hw


def rope_angles(d: int, grid: tuple[int, int, int], theta: float = 10000.0, dtype=torch.float64):
    """Angles (L, d // 2) for the (F, Hg, Wg) grid, L = F*Hg*Wg in (frame, row, column) order."""
    f, h, w = grid
    angles = []
    for axis, (n, dim) in enumerate(zip(grid, band_dims(d))):
        inv = theta ** (-torch.arange(0, dim, 2, dtype=dtype) / dim)  # (dim/2,)
        a = torch.outer(torch.arange(n, dtype=dtype), inv)  # (n, dim/2)
        view = [1, 1, 1, dim // 2]
        view[axis] = n
        angles.append(a.view(view).expand(f, h, w, dim // 2))
    return torch.cat(angles, dim=-1).reshape(f * h * w, d // 2)


def reference(x, weight, num_heads: int, grid, eps: float = 1e-6, theta: float = 10000.0):
    """Plain torch in fp32 (float64 if x is): (B, L, H*D) -> (B, L, H, D)."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    h = x.to(acc)
    n = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    n = n * weight.to(acc) if weight is not None else n
    n = n.unflatten(-1, (num_heads, -1))  # (B, L, H, D)
    ang = rope_angles(n.shape[-1], grid, theta, dtype=torch.float64).to(device=x.device)
    cos, sin = ang.cos().to(acc)[None, :, None, :], ang.sin().to(acc)[None, :, None, :]
    x1, x2 = n[..., 0::2], n[..., 1::2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


@triton.jit
def _rope_qk_norm_kernel(
    x_ptr, w_ptr, o_ptr, pos_ptr,
    L, E, GH, GW, sx_b, sx_l, eps, log2_theta,
    HALF_D: tl.constexpr, NT: tl.constexpr, NH: tl.constexpr,
    HAS_W: tl.constexpr, BLOCK_P: tl.constexpr, EMULATE: tl.constexpr, HAS_POS: tl.constexpr = False,
):
    row = tl.program_id(0).to(tl.int64)
    b = row // L
    l = row % L
    e = tl.arange(0, 2 * BLOCK_P)  # element index within the row of E = H*D
    m = e < E
    x = tl.load(x_ptr + b * sx_b + l * sx_l + e, mask=m, other=0.0)
    h = x.to(tl.float32)
    n = h * tl.rsqrt(tl.sum(h * h, axis=0) / E + eps)
    if HAS_W:
        n = n * tl.load(w_ptr + e, mask=m, other=0.0).to(tl.float32)
    raster = l
    if HAS_POS:  # tokens in another order (sparse attention's tiles): pos[l] is the grid position
        raster = tl.load(pos_ptr + l).to(tl.int64)
    cos, sin = _angles(tl.arange(0, BLOCK_P) % HALF_D, raster, GH, GW, log2_theta, HALF_D, NT, NH)
    x1, x2 = tl.split(tl.reshape(n, (BLOCK_P, 2)))  # (BLOCK_P,) even and odd elements
    out = tl.reshape(tl.join(x1 * cos - x2 * sin, x1 * sin + x2 * cos), (2 * BLOCK_P,))
    tl.store(o_ptr + row * E + e, cast_out(out, o_ptr.dtype.element_ty, EMULATE), mask=m)


@triton.jit
def _angles(j, l, GH, GW, log2_theta, HALF_D: tl.constexpr, NT: tl.constexpr, NH: tl.constexpr):
    # pair j of a head: band (frames | rows | columns), its index inside the band, position
    in_t = j < NT
    in_h = (j >= NT) & (j < NT + NH)
    jj = tl.where(in_t, j, tl.where(in_h, j - NT, j - NT - NH))
    dim = tl.where(in_t, 2 * NT, tl.where(in_h, 2 * NH, 2 * (HALF_D - NT - NH)))
    pos = tl.where(in_t, l // (GH * GW), tl.where(in_h, (l // GW) % GH, l % GW))
    inv_freq = tl.exp2(-(2 * jj).to(tl.float32) / dim.to(tl.float32) * log2_theta)
    angle = pos.to(tl.float32) * inv_freq
    return tl.cos(angle), tl.sin(angle)


def num_warps_for(e: int) -> int:
    """About 8 elements (one 16-byte bf16 vector) per thread, 1..16 warps."""
    return max(1, min(16, triton.next_power_of_2(e) // 256))


def launch(x, weight, num_heads: int, grid, eps: float = 1e-6, theta: float = 10000.0, out=None, wrap=None,
           pos=None):
    """Run the kernel; (B, L, H*D) -> (B, L, H, D); `out` may be given (e.g. poisoned); `pos` (L,)
    int: each token's raster index in the grid when the tokens are not in raster order."""
    bsz, seq, e = x.shape
    d = e // num_heads
    out = torch.empty((bsz, seq, num_heads, d), dtype=x.dtype, device=x.device) if out is None else out
    dt, dh, _ = band_dims(d)
    kernel = wrap(_rope_qk_norm_kernel) if wrap else _rope_qk_norm_kernel
    kernel[(bsz * seq,)](
        x, weight if weight is not None else x, out, pos if pos is not None else x,
        seq, e, grid[1], grid[2], x.stride(0), x.stride(1), eps, math.log2(theta),
        HALF_D=d // 2, NT=dt // 2, NH=dh // 2, HAS_W=weight is not None,
        BLOCK_P=triton.next_power_of_2(e) // 2, EMULATE=is_interpreted(_rope_qk_norm_kernel),
        HAS_POS=pos is not None, num_warps=num_warps_for(e),
    )
    return out


def _op_impl(x: torch.Tensor, weight: Optional[torch.Tensor], num_heads: int, grid_f: int, grid_h: int,
             grid_w: int, eps: float, theta: float, pos: Optional[torch.Tensor] = None) -> torch.Tensor:
    """vdrt::rope_qk_norm: (B, L, H*D) -> (B, L, H, D), RMSNorm across heads then 3-D RoPE."""
    return launch(x, weight, num_heads, (grid_f, grid_h, grid_w), eps, theta, wrap=lambda k: traceable(k, x),
                  pos=pos)


def _op_fake(x, weight, num_heads, grid_f, grid_h, grid_w, eps, theta, pos=None):
    bsz, seq, e = x.shape
    return x.new_empty((bsz, seq, num_heads, e // num_heads))


rope_qk_norm_op = define_op("vdrt::rope_qk_norm", _op_impl, _op_fake, _rope_qk_norm_kernel)


def rope_qk_norm(x, weight, num_heads: int, grid, eps: float = 1e-6, theta: float = 10000.0):
    """(B, L, H*D) -> (B, L, H, D) through the custom op (the kernel where supported, else torch)."""
    if not supports(x, weight, num_heads, grid):
        return reference(x, weight, num_heads, grid, eps, theta)
    return torch.ops.vdrt.rope_qk_norm(x, weight, num_heads, *grid, eps, theta)


def supports(x, weight, num_heads: int, grid) -> bool:
    """(B, L, H*D) with unit-stride channels, L = F*Hg*Wg, even head dim, H*D <= 16384."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.numel() == 0 or x.stride(-1) != 1:
        return False
    e = x.shape[-1]
    if num_heads < 1 or e % num_heads or (e // num_heads) % 2 or e > MAX_E or math.prod(grid) != x.shape[1]:
        return False
    if weight is not None and (weight.shape != (e,) or not weight.is_contiguous()):
        return False
    if not device_ok(x, *([weight] if weight is not None else [])):
        return False
    return x.dtype in (_CPU_DTYPES if x.device.type == "cpu" else _CUDA_DTYPES)


def register_ops() -> None:
    """Register implementation "vdrt" of op "rope_qk_norm" (Wan's tables: theta 10000, the same band split).

    The op's torch form reads precomputed cos/sin tables; the kernel computes the same angles from
    the grid in fp32 (the tables are fp32 roundings of float64 angles: ~1e-7 apart).
    """
    from vdrt import ops

    def fn(x, weight, eps, cos, sin, num_heads, grid, pos=None):
        w = weight.to(x.dtype) if weight is not None else None
        return torch.ops.vdrt.rope_qk_norm(x, w, num_heads, *grid, eps, 10000.0, pos)

    def ok(x, weight, eps, cos, sin, num_heads, grid, pos=None):
        # weight None means qk_norm off in the op (no norm at all) while the kernel always normalises: torch path
        return weight is not None and supports(x, weight.to(x.dtype), num_heads, grid) and (
            pos is None or (pos.device == x.device and pos.shape == (x.shape[1],)))

    ops.register("rope_qk_norm", "vdrt", fn, supports=ok)
