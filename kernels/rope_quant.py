"""QK-RMSNorm + 3D rope with 8-bit attention's quantisation fused in: q and k leave the kernel as int8 codes.

Shapes (one alphabet: B batch, L tokens, N heads, K head dim, E = N*K, NB blocks of rows):
    x (B, L, E) the q or k linear's output, tokens in the order of `pos` (raster when None), weight (E,)
    -> codes (B, L, N, K) int8, scales fp32: (B, N, L) per token (q's form, PER_ROW) or (B, N, NB) per block
       of rows (k's form; block i = rows [starts[i], starts[i] + lens[i]), lens[i] <= BLOCK: uniform
       blocks of the dense 8-bit kernel's key block, or the 3D tiles of sparse attention).
Per element (as `vdrt.kernels.rope` then `attention_quant` compute it, so fused == unfused):
    n = rope(x * rsqrt(mean_E(x^2) + eps) * weight), rounded to x's dtype (what rope would have written)
    y = n - centre[b, h, :]              (k only: softmax is unchanged by any per-channel vector, since
                                          q . c is constant along each query row: the centre only has
                                          to be a good one, not the exact mean; see `centre_of`)
    scale = max(amax|y| over the row or block, 1e-8) / 127, codes = round_half_away(y / scale)
    the stored q scale carries the softmax scale * log2(e) (`extra_scale`), as `quantize_rows`.

Kernel: one program per block of rows and batch entry. Pass 1 over the N heads sums x^2 per row (the
norm spans all heads); the rope angles of the block (BLOCK, K/2) are computed once for all heads; pass 2
per head normalises, rotates, centres, takes the row or block amax and stores codes and scales. Pass 2
reads x again, from L2: BLOCK * E * 2 bytes = 192 KiB at 64 x 1536 bf16.

Cost model (M = B*L tokens, elem = bytes of x's dtype): bytes = 2*M*E*elem (the second read an L2 hit,
so ~M*E*elem from HBM) + M*E codes + scales; the unfused path moves M*E*elem (read) + M*E*elem (write q/k)
+ M*E*elem (quantiser's read) + M*E*elem (k's mean) + M*E (codes). FLOPs ~ 12*M*E, L*K/2 sin/cos per
block (not per head). Memory-bound.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from vdrt.kernels import attention_quant as AQ
from vdrt.kernels import rope as R
from vdrt.kernels._common import cast_out, define_op, interpreting, traceable
from vdrt.kernels.quant import to_int8

CENTRE_SAMPLES = 256  # tokens of k whose mean centres k (strided over the sequence)
CENTRES = ("sample", "first", "exact", "none")


def reference(x, weight, num_heads: int, grid, starts, lens, per_row: bool, centre=None, extra_scale=1.0,
              eps: float = 1e-6, theta: float = 10000.0, pos=None):
    """float64 codes (B, L, N, K) and scales as the kernel computes them (rope rounded to x's dtype first)."""
    n = _rope_rounded(x, weight, num_heads, grid, eps, theta, pos)  # (B, L, N, K)
    if per_row:
        return AQ.reference_rows(n, "int8", extra_scale)
    return AQ.reference_blocks(n, starts, lens, "int8", centre=centre)


def _rope_rounded(x, weight, num_heads, grid, eps, theta, pos):
    """rope's output in x's dtype for tokens in `pos` order: (B, L, E) -> (B, L, N, K)."""
    if pos is None:
        return R.reference(x, weight, num_heads, grid, eps, theta)
    raster = torch.empty_like(x)
    raster[:, pos.long()] = x  # back to raster order, rope, then to `pos` order again
    return R.reference(raster, weight, num_heads, grid, eps, theta)[:, pos.long()]


# ---------------------------------------------------------------- Triton kernel


@triton.jit
def _rope_quant_kernel(X, W, Pos, Centre, Starts, Lens, Xq, S, L, NB, H, GH, GW, sx_b, sx_l, eps, log2_theta,
                       extra_scale, D: tl.constexpr, NT: tl.constexpr, NH: tl.constexpr, BLOCK: tl.constexpr,
                       HAS_W: tl.constexpr, HAS_POS: tl.constexpr, HAS_CENTRE: tl.constexpr,
                       TABLE: tl.constexpr, PER_ROW: tl.constexpr, EMULATE: tl.constexpr):
    """Grid (NB, B). Codes (B, L, N, K) contiguous; scales (B, N, L) if PER_ROW else (B, N, NB)."""
    blk, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    if TABLE:
        start, n = tl.load(Starts + blk), tl.load(Lens + blk)
    else:
        start, n = blk * BLOCK, tl.minimum(L - blk * BLOCK, BLOCK)
    r = tl.arange(0, BLOCK)
    ok = r < n
    rows = (start + r).to(tl.int64)
    cols = tl.arange(0, D)
    src = X + b * sx_b + rows[:, None] * sx_l + cols[None, :]
    ssq = tl.zeros([BLOCK], tl.float32)
    for h in range(H):  # pass 1: the RMS over all heads
        x = tl.load(src + h * D, mask=ok[:, None], other=0.0).to(tl.float32)
        ssq += tl.sum(x * x, 1)
    inv = tl.rsqrt(ssq / (H * D) + eps)
    raster = rows
    if HAS_POS:
        raster = tl.load(Pos + rows, mask=ok, other=0).to(tl.int64)
    cos, sin = R._angles(tl.arange(0, D // 2)[None, :], raster[:, None], GH, GW, log2_theta, D // 2, NT, NH)
    # NaN/Inf in a row make its sum of squares non-finite: its scale becomes NaN (the GPU's max ignores NaN,
    # and an int8 code cannot hold one), so they reach the attention output instead of turning into codes
    bad = tl.where(ok, ssq * 0.0, 0.0)  # (BLOCK,) 0, or NaN for a non-finite row
    for h in range(H):  # pass 2: per head, from L2
        y = _rotated(src + h * D, W + h * D, cols, ok, inv, cos, sin, X.dtype.element_ty, BLOCK, D, HAS_W, EMULATE)
        bh = b * H + h
        poison = bad
        if HAS_CENTRE:
            c = tl.load(Centre + bh * D + cols)
            y = y - c[None, :]
            poison = bad + tl.sum(c * 0.0, 0)
        y = tl.where(ok[:, None], y, 0.0)
        _store_codes(y, Xq + (b * L + rows[:, None]) * (H * D) + h * D + cols[None, :], S, bh, rows, ok, blk, L, NB,
                     extra_scale, poison, PER_ROW)


@triton.jit
def _rotated(src, w, cols, ok, inv, cos, sin, DTYPE: tl.constexpr, BLOCK: tl.constexpr, D: tl.constexpr,
             HAS_W: tl.constexpr, EMULATE: tl.constexpr):
    """(BLOCK, D) of one head: normalised, weighted, rotated pairs, rounded to DTYPE (fp32 out)."""
    x = tl.load(src, mask=ok[:, None], other=0.0).to(tl.float32) * inv[:, None]
    if HAS_W:
        x = x * tl.load(w + cols).to(tl.float32)[None, :]
    x1, x2 = tl.split(tl.reshape(x, (BLOCK, D // 2, 2)))
    y = tl.reshape(tl.join(x1 * cos - x2 * sin, x1 * sin + x2 * cos), (BLOCK, D))
    return cast_out(y, DTYPE, EMULATE).to(tl.float32)


@triton.jit
def _store_codes(y, dst, S, bh, rows, ok, blk, L, NB, extra_scale, poison, PER_ROW: tl.constexpr):
    """Codes of y (BLOCK, D) and its scales; `poison` (BLOCK,) is 0, or NaN where a row was not finite."""
    if PER_ROW:
        scale = tl.maximum(tl.max(tl.abs(y), 1), 1e-8) / 127.0  # (BLOCK,)
        tl.store(dst, to_int8(y / scale[:, None]), mask=ok[:, None])
        tl.store(S + bh * L + rows, scale * extra_scale + poison, mask=ok)
    else:
        scale = tl.maximum(tl.max(tl.max(tl.abs(y), 1), 0), 1e-8) / 127.0
        tl.store(dst, to_int8(y / scale), mask=ok[:, None])
        tl.store(S + bh * NB + blk, scale + tl.sum(poison, 0))


# ---------------------------------------------------------------- launcher and op


def launch(x, weight, num_heads: int, grid, block: int, per_row: bool, starts=None, lens=None, centre=None,
           extra_scale: float = 1.0, eps: float = 1e-6, theta: float = 10000.0, pos=None, wrap=None):
    """(B, L, E) -> int8 codes (B, L, N, K), fp32 scales (B, N, L) or (B, N, NB); blocks uniform of `block`
    rows unless starts/lens (int32, lens <= block) are given; centre (B, N, K) fp32 or None."""
    bsz, seq, e = x.shape
    d = e // num_heads
    nb = starts.numel() if starts is not None else triton.cdiv(seq, block)
    codes = torch.empty((bsz, seq, num_heads, d), dtype=torch.int8, device=x.device)
    scales = torch.empty((bsz, num_heads, seq if per_row else nb), dtype=torch.float32, device=x.device)
    dt, dh, _ = R.band_dims(d)
    kernel = (wrap or (lambda k: k))(_rope_quant_kernel)
    kernel[(nb, bsz)](
        x, x if weight is None else weight, x if pos is None else pos, x if centre is None else centre,
        x if starts is None else starts, x if lens is None else lens, codes, scales,
        seq, nb, num_heads, grid[1], grid[2], x.stride(0), x.stride(1), eps, math.log2(theta), extra_scale,
        D=d, NT=dt // 2, NH=dh // 2, BLOCK=block, HAS_W=weight is not None, HAS_POS=pos is not None,
        HAS_CENTRE=centre is not None, TABLE=starts is not None, PER_ROW=per_row, EMULATE=interpreting(),
        num_warps=8 if block * d >= 8192 else 4)
    return codes, scales


def _op_impl(x: torch.Tensor, weight: Optional[torch.Tensor], centre: Optional[torch.Tensor],
             pos: Optional[torch.Tensor], starts: Optional[torch.Tensor], lens: Optional[torch.Tensor],
             num_heads: int, grid_f: int, grid_h: int, grid_w: int, block: int, per_row: bool, extra_scale: float,
             eps: float, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """vdrt::rope_quant: (B, L, N*K) -> int8 codes (B, L, N, K), fp32 scales (B, N, L | NB)."""
    return launch(x, weight, num_heads, (grid_f, grid_h, grid_w), block, per_row, starts, lens, centre,
                  extra_scale, eps, theta, pos, wrap=lambda k: traceable(k, x))


def _op_fake(x, weight, centre, pos, starts, lens, num_heads, grid_f, grid_h, grid_w, block, per_row, extra_scale,
             eps, theta):
    bsz, seq, e = x.shape
    nb = starts.shape[0] if starts is not None else -(-seq // block)
    return (x.new_empty((bsz, seq, num_heads, e // num_heads), dtype=torch.int8),
            x.new_empty((bsz, num_heads, seq if per_row else nb), dtype=torch.float32))


rope_quant_op = define_op("vdrt::rope_quant", _op_impl, _op_fake, _rope_quant_kernel)


# ---------------------------------------------------------------- k's centre


def sample_index(seq: int, n: int, device) -> torch.Tensor:
    """n token indices strided evenly over [0, seq) (all of them when seq <= n): (n,) int64."""
    if seq <= n:
        return torch.arange(seq, device=device)
    return torch.arange(n, device=device) * seq // n


def centre_of(x, weight, num_heads: int, grid, kind: str = "sample", eps: float = 1e-6, pos=None, rope_fn=None,
              samples: int | None = None):
    """k's centre (B, N, K) fp32, or None for "none": the mean of rope(norm(k)) over the tokens `kind` names:
    "sample" `samples` tokens strided over the sequence, "first" the first `samples`, "exact" all of them.
    `rope_fn(x_sub, raster_sub) -> (B, S, N, K)` computes rope on a subset (default: the rope kernel)."""
    if kind not in CENTRES:
        raise ValueError(f"k centre must be one of {CENTRES}, got {kind!r}")
    if kind == "none":
        return None
    seq, samples = x.shape[1], CENTRE_SAMPLES if samples is None else samples
    if kind == "sample":
        idx = sample_index(seq, samples, x.device)
    else:
        idx = torch.arange(seq if kind == "exact" else min(seq, samples), device=x.device)
    raster = idx if pos is None else pos[idx].long()
    if rope_fn is None:
        sub = torch.ops.vdrt.rope_qk_norm(x[:, idx], weight, num_heads, *grid, eps, 10000.0, raster)
    else:
        sub = rope_fn(x[:, idx], raster)
    return sub.float().mean(1).contiguous()  # (B, S, N, K) -> (B, N, K)


def register_ops() -> None:
    """Nothing to register by name: `vdrt.kernels.attention_fused` uses this kernel for the fused choices."""
