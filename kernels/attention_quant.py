"""Quantizers for 8-bit attention: Q per token, K smoothed per block (or per 3D tile), V per channel.

Shapes (the one alphabet: N heads, K head dim): x (B, L, N, K) -> codes (B, L, N, K) in the same layout (so a tensor
descriptor reads a head's (L, D) plane at row stride H*D bytes), scales fp32:
- `quantize_rows`: one scale per (token, head), scale = amax_D |x| / QMAX * extra_scale. Q's
  scale carries the softmax scale * log2(e), so the kernel's dequantized scores feed exp2.
  -> scales (B, N, L).
- `quantize_blocks`: K - mean_L(K) (smoothing: softmax is invariant to adding q.mean(K) to a row,
  and K's per-channel bias dominates its range), one scale per block of rows and head. Blocks
  are [start, start + len) rows: uniform BLOCK rows, or the 3D tiles of sparse attention.
  -> scales (B, N, NB).
- `quantize_v`: V per channel to e4m3, vs[b, h, d] = amax_L |v| / 448, written transposed
  (B, N, K, L_pad), L_pad a multiple of 16, so P V's operand is K-major as Hopper's fp8 wgmma wants;
  or tile-padded for sparse attention (each 3D tile's tokens at a multiple of the tile size, zeros after:
  TMA and aligned block loads of any tile's V^T).
Codes are int8 (round half away from zero, +-127) or e4m3 (round to nearest even, +-448).

Cost model: each kernel reads its input once (2 B/elt) and writes 1 B/elt plus the scales;
K and V need one more read for their mean / amax (torch reductions). Memory-bound.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdrt.kernels._common import interpreting, to_e4m3, traceable
from vdrt.kernels.quant import to_codes

FP8_MAX = 448.0
INT8_MAX = 127.0
EPS = 1e-8  # smallest amax used for a scale: all-zero rows quantize to 0 without NaN
KINDS = ("int8", "fp8")


def reference_rows(x: torch.Tensor, kind: str = "int8", extra_scale: float = 1.0):
    """float64 codes (B, L, N, K) and scales (B, N, L) as `quantize_rows` computes them."""
    xd = x.double()
    sc = xd.abs().amax(-1).clamp_min(EPS) / _qmax(kind)  # (B, L, N)
    return _codes(xd / sc[..., None], kind), (sc * extra_scale).permute(0, 2, 1)


def reference_blocks(x: torch.Tensor, starts, lens, kind: str = "int8", smooth: bool = True, centre=None):
    """float64 codes (B, L, N, K) and scales (B, N, NB) as `quantize_blocks` computes them; `centre`
    (B, N, K), when given, is subtracted instead of the mean (the fused rope kernel's k centre)."""
    if centre is not None:
        xd = x.double() - centre.double()[:, None]
    else:
        xd = x.double() - (x.double().mean(1, keepdim=True) if smooth else 0)
    codes, scales = torch.zeros_like(xd), []
    for s, n in zip(starts.tolist(), lens.tolist()):
        blk = xd[:, s : s + n]
        sc = blk.abs().amax(dim=(1, 3)).clamp_min(EPS) / _qmax(kind)  # (B, H)
        codes[:, s : s + n] = _codes(blk / sc[:, None, :, None], kind)
        scales.append(sc)
    return codes, torch.stack(scales, -1)


def _qmax(kind: str) -> float:
    return INT8_MAX if kind == "int8" else FP8_MAX


def _codes(y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "int8":
        return torch.trunc(y + 0.5 * torch.sign(y)).clamp(-INT8_MAX, INT8_MAX)
    return y.clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).double()


# ---------------------------------------------------------------- Triton kernels


@triton.jit
def _rows_kernel(X, Xq, S, H, L, extra_scale, sxb, sxl, sxh, sqb, sql, sqh,
                 D: tl.constexpr, BLOCK: tl.constexpr, FP8: tl.constexpr, EMULATE: tl.constexpr):
    """Grid (cdiv(L, BLOCK), B * H): rows of one head, a scale per row."""
    pid_l, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)
    rows = pid_l * BLOCK + tl.arange(0, BLOCK)
    cols = tl.arange(0, D)
    ok = rows[:, None] < L
    x = tl.load(X + b * sxb + h * sxh + rows[:, None] * sxl + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    qmax = 448.0 if FP8 else 127.0
    scale = tl.maximum(tl.max(tl.abs(x), 1), 1e-8) / qmax  # (BLOCK,)
    codes = to_codes(x / scale[:, None], FP8, EMULATE)
    tl.store(Xq + b * sqb + h * sqh + rows[:, None] * sql + cols[None, :], codes, mask=ok)
    tl.store(S + pid_bh.to(tl.int64) * L + rows, scale * extra_scale, mask=rows < L)


@triton.jit
def _blocks_kernel(X, Mean, Starts, Lens, Xq, S, H, NB, sxb, sxl, sxh, sqb, sql, sqh,
                   D: tl.constexpr, BLOCK: tl.constexpr, FP8: tl.constexpr, EMULATE: tl.constexpr,
                   HAS_MEAN: tl.constexpr):
    """Grid (NB, B * H): block i = rows [Starts[i], Starts[i] + Lens[i]), Lens[i] <= BLOCK."""
    blk, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)
    start, n = tl.load(Starts + blk), tl.load(Lens + blk)
    rows = start + tl.arange(0, BLOCK)
    cols = tl.arange(0, D)
    ok = tl.arange(0, BLOCK)[:, None] < n
    x = tl.load(X + b * sxb + h * sxh + rows[:, None] * sxl + cols[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_MEAN:
        x = tl.where(ok, x - tl.load(Mean + pid_bh.to(tl.int64) * D + cols)[None, :], 0.0)
    qmax = 448.0 if FP8 else 127.0
    scale = tl.maximum(tl.max(tl.max(tl.abs(x), 1), 0), 1e-8) / qmax
    tl.store(Xq + b * sqb + h * sqh + rows[:, None] * sql + cols[None, :], to_codes(x / scale, FP8, EMULATE), mask=ok)
    tl.store(S + pid_bh.to(tl.int64) * NB + blk, scale)


@triton.jit
def _v_kernel(V, VScale, Vt, Starts, Lens, H, L, L_pad, svb, svl, svh, D: tl.constexpr, BLOCK: tl.constexpr,
              EMULATE: tl.constexpr, TILED: tl.constexpr):
    """Grid (L_pad / BLOCK, B * H): v (B, L, N, K) -> vt (B, N, K, L_pad) e4m3 = v / scale_v. TILED: program
    t copies tile t's rows [Starts[t], Starts[t] + Lens[t]) to columns [t * BLOCK, ...), zeros after them."""
    pid_l, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)
    r = tl.arange(0, BLOCK)
    if TILED:
        rows = tl.load(Starts + pid_l) + r
        ok = r < tl.load(Lens + pid_l)
    else:
        rows = pid_l * BLOCK + r
        ok = rows < L
    dst = pid_l * BLOCK + r
    cols = tl.arange(0, D)
    v = tl.load(V + b * svb + h * svh + rows[:, None] * svl + cols[None, :], mask=ok[:, None],
                other=0.0).to(tl.float32)
    vs = tl.load(VScale + pid_bh.to(tl.int64) * D + cols)
    base = Vt + pid_bh.to(tl.int64) * D * L_pad
    tl.store(base + cols[None, :] * L_pad + dst[:, None], to_e4m3(v / vs[None, :], EMULATE),
             mask=dst[:, None] < L_pad)


# ---------------------------------------------------------------- launchers


def _dtype(kind: str) -> torch.dtype:
    if kind not in KINDS:
        raise ValueError(f"quantization kind must be one of {KINDS}, got {kind!r}")
    return torch.int8 if kind == "int8" else torch.float8_e4m3fn


def _warps(rows: int, d: int) -> int:
    return 8 if rows * d >= 16384 else 4


def quantize_rows(x, kind: str = "int8", extra_scale: float = 1.0, block: int = 64):
    """(B, L, N, K) -> codes (B, L, N, K), fp32 scales (B, N, L): one scale per token and head."""
    b, n, h, d = x.shape
    xq = torch.empty((b, n, h, d), dtype=_dtype(kind), device=x.device)
    scale = torch.empty((b, h, n), dtype=torch.float32, device=x.device)
    args = (x, xq, scale, h, n, extra_scale, *x.stride()[:3], *xq.stride()[:3])
    traceable(_rows_kernel, x)[(triton.cdiv(n, block), b * h)](
        *args, D=d, BLOCK=block, FP8=kind == "fp8", EMULATE=interpreting(), num_warps=_warps(block, d))
    return xq, scale


def uniform_blocks(n: int, block: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Starts and lengths (int32) of rows [0, n) cut into blocks of `block` (the last may be short)."""
    starts = torch.arange(0, n, block, dtype=torch.int32, device=device)
    return starts, (n - starts).clamp(max=block).to(torch.int32)


def quantize_blocks(x, starts, lens, block: int, kind: str = "int8", smooth: bool = True):
    """(B, L, N, K) -> codes (B, L, N, K), fp32 scales (B, N, NB); K - mean_L(K) when `smooth`.

    Block i covers rows [starts[i], starts[i] + lens[i]), lens[i] <= block (a power of two)."""
    b, n, h, d = x.shape
    nb = starts.numel()
    xq = torch.zeros((b, n, h, d), dtype=_dtype(kind), device=x.device)
    scale = torch.empty((b, h, nb), dtype=torch.float32, device=x.device)
    mean = x.mean(dim=1, dtype=torch.float32).contiguous() if smooth else scale
    args = (x, mean, starts, lens, xq, scale, h, nb, *x.stride()[:3], *xq.stride()[:3])
    traceable(_blocks_kernel, x)[(nb, b * h)](*args, D=d, BLOCK=block, FP8=kind == "fp8", EMULATE=interpreting(),
                                              HAS_MEAN=smooth, num_warps=_warps(block, d))
    return xq, scale


def quantize_v(v, block: int = 64, starts=None, lens=None):
    """(B, L, N, K) -> e4m3 (B, N, K, L_pad) transposed, scales (B, N, K). Plain: L_pad = L rounded up to 16.
    Tile-padded (starts/lens of T tiles of <= `block` rows, sparse attention's): L_pad = T * block, tile t
    at columns [t * block, t * block + lens[t]) and zeros after, so every tile's V^T starts aligned."""
    b, n, h, d = v.shape
    tiled = starts is not None
    n_pad = starts.numel() * block if tiled else triton.cdiv(n, 16) * 16
    lo, hi = torch.aminmax(v, dim=1)  # (B, N, K) each, no fp32 copy of v
    vscale = (torch.maximum(hi.float(), -lo.float()).clamp_min(EPS) / FP8_MAX).contiguous()
    vt = torch.empty((b, h, d, n_pad), dtype=torch.float8_e4m3fn, device=v.device)
    tables = (starts, lens) if tiled else (vscale, vscale)
    traceable(_v_kernel, v)[(triton.cdiv(n_pad, block), b * h)](
        v, vscale, vt, *tables, h, n, n_pad, *v.stride()[:3], D=d, BLOCK=block, EMULATE=interpreting(),
        TILED=tiled, num_warps=_warps(block, d))
    return vt, vscale
