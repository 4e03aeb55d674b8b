"""Block-sparse 3D attention (sliding-tile style), bf16/fp16 or 8-bit, on tokens in tile order.

Shapes (the one alphabet: N heads, K head dim): q, k, v (B, L, N, K) in the tile order of a `vdrt.sparse.TileLayout`
(tile i = rows [starts[i], starts[i] + lens[i]), lens[i] <= BLOCK) -> out (B, L, N, K).
A `vdrt.sparse.Plan` lists, per query tile (and per head with per-head windows), the key
tiles it visits: lut (Hp, T, V) int32, counts (Hp, T, 2) = (full tiles, all tiles); full key
tiles come first and run unmasked, partial ones mask their missing columns with -inf.

One program per (query tile, batch*head). It loads the tile's BLOCK query rows (rows of the
next tile or past L are computed and never stored), then for each visited key tile loads its
BLOCK rows at starts[tile] (TMA descriptors: arbitrary row offsets) and runs the same online
softmax as the dense kernel (`attention._softmax_pv`). The 8-bit path (EIGHT) takes the codes
of `attention_quant`: Q per token, K smoothed per TILE (`quantize_blocks` over the tiles), V per
channel in e4m3 transposed, and the scores of `attention_int8._scores8`. Absent tiles cost nothing.

Cost model per call: FLOPs = 4 * B * N * K * sum over query tiles of (BLOCK * BLOCK * visited)
(the kernel's work, padding rows of partial tiles included); exact pairs = density * L^2.
At 25% density the ideal is 4x less time than dense attention over the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import triton
import triton.language as tl
from torch.library import triton_op

from vdrt.kernels import attention_quant as AQ
from vdrt.kernels._common import cast_out, traceable, tracing
from vdrt.kernels.attention import (LOG2E, _check, _interpreting, _kv_loader, _load_kv, _load_q, _scores,
                                    _softmax_pv, set_descriptor_allocator, tma_ok)
from vdrt.kernels.attention_int8 import _k_desc, _load_k8, _load_v8, _scores8, _v_desc


# ---------------------------------------------------------------- Triton kernel


@triton.jit
def _visit(acc, l_i, m_i, q, q_scale, kt, row, kd, vd, K, V, KS_row, Lens, base_k, base_v, L, L_PAD,
           stride_kl, stride_vl, qk_scale, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, MASK: tl.constexpr,
           EIGHT: tl.constexpr, QK_FP8: tl.constexpr, PV_FP8: tl.constexpr, TMA: tl.constexpr,
           LAZY: tl.constexpr, INTERP: tl.constexpr, P_LOG2: tl.constexpr):
    """Query tile x key tile `kt` (its first row `row`): one online-softmax update."""
    if EIGHT:
        k = _load_k8(kd, K, base_k, row, L, stride_kl, HEAD_DIM, BLOCK, TMA)
        s = _scores8(q, k, q_scale * tl.load(KS_row + kt), QK_FP8, INTERP)
        # e4m3 V^T is tile-padded (`quantize_v` with the tiles): tile kt's columns start at kt * BLOCK
        v = _load_v8(vd, V, base_v, kt * BLOCK if PV_FP8 else row, stride_vl, HEAD_DIM, BLOCK, TMA, PV_FP8, L_PAD)
    else:
        k, v = _load_kv(kd, vd, row, L, stride_kl, stride_vl, HEAD_DIM, BLOCK, TMA, True)
        s = _scores(q, k, qk_scale, INTERP)
    if MASK:
        s = tl.where(tl.arange(0, BLOCK)[None, :] < tl.load(Lens + kt), s, float("-inf"))
    return _softmax_pv(acc, l_i, m_i, s, v, LAZY, INTERP, P_LOG2)


@triton.jit
def _sparse_fwd(Q, K, V, O, QS, KS, VS, Starts, Lens, Lut, LutRows, Counts, H, L, T, WIDTH, L_PAD, qk_scale,
                stride_qb, stride_ql, stride_qh, stride_kb, stride_kl, stride_kh,
                stride_vb, stride_vl, stride_vh, stride_ob, stride_ol, stride_oh,
                HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, EIGHT: tl.constexpr, QK_FP8: tl.constexpr,
                PV_FP8: tl.constexpr, TMA: tl.constexpr, WS: tl.constexpr, LAZY: tl.constexpr,
                INTERP: tl.constexpr, PER_HEAD: tl.constexpr):
    """Grid (T, B * H). Q/K are 8-bit codes when EIGHT (V: vt (B, N, K, L_PAD = T * BLOCK) e4m3 when PV_FP8,
    tile-padded: tile t's tokens at columns [t * BLOCK, t * BLOCK + lens[t]), zeros after)."""
    t = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    b, h = pid_bh // H, pid_bh % H
    start, n = tl.load(Starts + t), tl.load(Lens + t)
    q = _load_q(Q, b * stride_qb + h * stride_qh, start, L, stride_ql, HEAD_DIM, BLOCK, TMA)
    rows = start + tl.arange(0, BLOCK)
    q_scale = tl.zeros([BLOCK], tl.float32)
    if EIGHT:
        q_scale = tl.load(QS + pid_bh * L + rows, mask=rows < L, other=0.0)
    base_k = b * stride_kb + h * stride_kh
    base_v = pid_bh * HEAD_DIM * L_PAD if (EIGHT and PV_FP8) else b * stride_vb + h * stride_vh
    if EIGHT:
        kd = _k_desc(K, base_k, L, stride_kl, HEAD_DIM, BLOCK, TMA)
        vd = _v_desc(V, base_v, L_PAD, stride_vl, HEAD_DIM, BLOCK, TMA, PV_FP8)
    else:
        kd, vd = _kv_loader(K, V, base_k, base_v, L, stride_kl, stride_vl, HEAD_DIM, BLOCK, TMA)
    p_log2: tl.constexpr = (8.807354922057604 - (8.0 if LAZY else 0.0)) if (EIGHT and PV_FP8) else 0.0
    row_t = t.to(tl.int64)
    if PER_HEAD:
        row_t = h * T + t
    lut = Lut + row_t * WIDTH
    lut_rows = LutRows + row_t * WIDTH  # starts[lut]: the key rows without a dependent load
    n_full, n_all = tl.load(Counts + row_t * 2), tl.load(Counts + row_t * 2 + 1)
    ks_row = KS + pid_bh * T
    m_i = tl.full([BLOCK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    for j in tl.range(0, n_full, warp_specialize=WS):
        kt = tl.load(lut + j) if EIGHT else 0  # the tile id: only 8-bit needs it (its K scale)
        acc, l_i, m_i = _visit(acc, l_i, m_i, q, q_scale, kt, tl.load(lut_rows + j), kd, vd, K, V, ks_row, Lens,
                               base_k, base_v, L, L_PAD, stride_kl, stride_vl, qk_scale, HEAD_DIM, BLOCK, False,
                               EIGHT, QK_FP8, PV_FP8, TMA, LAZY, INTERP, p_log2)
    for j in range(n_full, n_all):
        acc, l_i, m_i = _visit(acc, l_i, m_i, q, q_scale, tl.load(lut + j), tl.load(lut_rows + j), kd, vd, K, V,
                               ks_row, Lens,
                               base_k, base_v, L, L_PAD, stride_kl, stride_vl, qk_scale, HEAD_DIM, BLOCK, True,
                               EIGHT, QK_FP8, PV_FP8, TMA, LAZY, INTERP, p_log2)
    out = acc / l_i[:, None]
    if EIGHT and PV_FP8:
        out = out * tl.load(VS + pid_bh * HEAD_DIM + tl.arange(0, HEAD_DIM))[None, :]
    o_ptrs = O + b * stride_ob + h * stride_oh + rows[:, None] * stride_ol + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(o_ptrs, cast_out(out, O.dtype.element_ty, INTERP), mask=tl.arange(0, BLOCK)[:, None] < n)


# ---------------------------------------------------------------- variants and launcher


@dataclass(frozen=True)
class SparseVariant:
    """The compiled form: precision (bf16/fp16, or 8-bit QK with fp8 or bf16 PV) and launch options."""

    eight: bool = False
    qk: str = "int8"
    pv_fp8: bool = True
    warps: int = 8
    stages: int = 3
    tma: bool = False
    ws: bool = False
    lazy: bool = False

    @property
    def name(self) -> str:
        prec = f"{self.qk}-pv{'fp8' if self.pv_fp8 else 'bf16'}" if self.eight else "bf16"
        flags = "".join(f"+{f}" for f in ("tma", "ws", "lazy") if getattr(self, f))
        return f"sparse-{prec}-w{self.warps}s{self.stages}{flags}"

    def meta(self) -> dict:
        return dict(EIGHT=self.eight, QK_FP8=self.qk == "fp8", PV_FP8=self.eight and self.pv_fp8, TMA=self.tma,
                    WS=self.ws, LAZY=self.lazy, num_warps=self.warps, num_stages=self.stages)


def default_variant(block: int, eight: bool) -> SparseVariant:
    """The fastest measured on the H200 (benchmarks/attention.py, 2026-11-29, Wan-1.3B grid, 25% density):
    64-token tiles with 4 warps (bf16 4.76 ms; 8-bit 3.84 ms with int8 QK and bf16 PV: its fp8-PV form
    ran 14.3 ms, e4m3 V^T tiles at unaligned columns go through pointer loads); 128-token tiles: 8 warps
    (bf16 4.94 ms with warp specialisation)."""
    if block == 64:
        return SparseVariant(eight=eight, pv_fp8=False, warps=4, stages=4 if not eight else 3, tma=True)
    return SparseVariant(eight=eight, pv_fp8=False, warps=8, stages=3, tma=True, ws=not eight)


def device_tables(plan, device: torch.device):
    """(starts, lens, lut, lut_rows, counts) of `plan` on `device`, made once per plan and device;
    lut_rows = starts[lut], the first row of each visited tile (real tensors even while torch traces)."""
    from vdrt.sparse import eager

    with eager():
        return _device_tables(plan, torch.device(device))


@lru_cache(maxsize=64)
def _device_tables(plan, device: torch.device):
    lay = plan.layout
    rows = lay.starts[plan.lut.long()]
    return tuple(t.to(device).contiguous() for t in (lay.starts, lay.lens, plan.lut, rows, plan.counts))


def sparse_attention_fwd(q, k, v, starts, lens, lut, lut_rows, counts, block: int, scale: float | None = None,
                         variant: SparseVariant | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, N, K) x3 in tile order + a plan's tables -> (B, L, N, K) in q's dtype."""
    _check(q, k, v, "sparse attention")
    # the token count is checked against the host copy of the plan (run_plan), or here for CPU tables:
    # reading a device tensor would synchronise, which a CUDA-graph capture forbids
    n_tiles = int(lens.sum()) if lens.device.type == "cpu" else q.shape[1]
    if q.shape != k.shape or lut.shape[0] not in (1, q.shape[2]) or n_tiles != q.shape[1]:
        raise ValueError(f"sparse attention takes q, k, v of one shape whose tokens are the plan's tiles "
                         f"({n_tiles} tokens, {lut.shape[0]} window sets); got {tuple(q.shape)}, {tuple(k.shape)}")
    var = variant or _op_variant(block, False)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    sm = (q.shape[-1] ** -0.5 if scale is None else scale) * LOG2E
    out = torch.empty_like(q) if out is None else out
    if var.eight:
        q, qs = AQ.quantize_rows(q, var.qk, sm)
        k, ks = AQ.quantize_blocks(k, starts, lens, block, var.qk)
    else:
        qs = ks = starts  # unused
    return _launch(q, qs, k, ks, v, out, (starts, lens, lut, lut_rows, counts), block, sm, var)


def _launch(q, qs, k, ks, v, out, tables, block: int, sm: float, var: SparseVariant) -> torch.Tensor:
    """The kernel on q/k (codes when var.eight) and bf16/fp16 v (quantised here for fp8 PV, tile-padded)."""
    starts, lens, lut, lut_rows, counts = tables
    b, n, h, d = q.shape
    if var.eight and var.pv_fp8:
        v, vs = AQ.quantize_v(v, block, starts, lens)
    else:
        v, vs = (v if v.stride(-1) == 1 else v.contiguous()), qs
    if var.tma and (not tma_ok(q, k, v) or tracing(q)):
        var = SparseVariant(var.eight, var.qk, var.pv_fp8, var.warps, var.stages, lazy=var.lazy)
    if var.tma:
        set_descriptor_allocator()
    l_pad = v.shape[-1] if var.eight and var.pv_fp8 else n
    vstr = (0, 0, 0) if var.eight and var.pv_fp8 else v.stride()[:3]
    args = (q, k, v, out, qs, ks, vs, starts, lens, lut, lut_rows, counts, h, n, lut.shape[1], lut.shape[2],
            l_pad, sm, *q.stride()[:3], *k.stride()[:3], *vstr, *out.stride()[:3])
    grid = (lut.shape[1], b * h)
    traceable(_sparse_fwd, *args)[grid](*args, HEAD_DIM=d, BLOCK=block, INTERP=_interpreting(),
                                        PER_HEAD=lut.shape[0] > 1, **var.meta())
    return out


def sparse_codes_fwd(q8, qs, k8, ks, v, starts, lens, lut, lut_rows, counts, block: int,
                     pv_fp8: bool = False, out=None) -> torch.Tensor:
    """The 8-bit kernel on codes a fused producer wrote (`vdrt.kernels.rope_quant`): q8 (B, L, N, K) int8,
    scales (B, N, L) with softmax scale * log2 e; k8 int8 centred, scales (B, N, T) per tile; v bf16/fp16
    (e4m3 tile-padded here when pv_fp8) -> (B, L, N, K) in v's dtype."""
    if q8.dtype != torch.int8 or k8.dtype != torch.int8 or ks.shape[-1] != lens.shape[0]:
        raise ValueError(f"sparse 8-bit codes: int8 q/k and one k scale per tile ({lens.shape[0]}) expected; "
                         f"got q {q8.dtype}, k {k8.dtype}, scales {tuple(ks.shape)}")
    var = replace(_op_variant(block, True), pv_fp8=pv_fp8)
    out = torch.empty(q8.shape, dtype=v.dtype, device=v.device) if out is None else out
    sm = q8.shape[-1] ** -0.5 * LOG2E  # unused by the 8-bit path (folded into qs)
    return _launch(q8, qs, k8, ks, v, out, (starts, lens, lut, lut_rows, counts), block, sm, var)


def _op_variant(block: int, eight: bool) -> SparseVariant:
    if _interpreting():  # small tiles of work for the CPU interpreter
        return SparseVariant(eight=eight, pv_fp8=False, warps=4, stages=1)
    return default_variant(block, eight)


# ---------------------------------------------------------------- torch.library ops


@triton_op("vdrt::attention_sparse", mutates_args=())
def attention_sparse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, starts: torch.Tensor, lens: torch.Tensor,
                     lut: torch.Tensor, lut_rows: torch.Tensor, counts: torch.Tensor, block: int,
                     eight: bool = False) -> torch.Tensor:
    """vdrt::attention_sparse: (B, L, N, K) x3 in tile order + plan tables -> (B, L, N, K)."""
    return sparse_attention_fwd(q, k, v, starts, lens, lut, lut_rows, counts, block, variant=_op_variant(block, eight))


@attention_sparse.register_fake
def _attention_sparse_fake(q, k, v, starts, lens, lut, lut_rows, counts, block, eight=False):
    return q.new_empty(q.shape)


@triton_op("vdrt::attention_sparse_codes", mutates_args=())
def attention_sparse_codes(q8: torch.Tensor, qs: torch.Tensor, k8: torch.Tensor, ks: torch.Tensor, v: torch.Tensor,
                           starts: torch.Tensor, lens: torch.Tensor, lut: torch.Tensor, lut_rows: torch.Tensor,
                           counts: torch.Tensor, block: int, pv_fp8: bool = False) -> torch.Tensor:
    """vdrt::attention_sparse_codes: pre-quantised q/k in tile order + plan tables -> (B, L, N, K)."""
    return sparse_codes_fwd(q8, qs, k8, ks, v, starts, lens, lut, lut_rows, counts, block, pv_fp8)


@attention_sparse_codes.register_fake
def _attention_sparse_codes_fake(q8, qs, k8, ks, v, starts, lens, lut, lut_rows, counts, block, pv_fp8=False):
    return v.new_empty((*q8.shape[:-1], v.shape[-1]))


def run_plan(q, k, v, plan, eight: bool = False) -> torch.Tensor:
    """The op on a `vdrt.sparse.Plan` (tables moved to q's device once per plan)."""
    if q.shape[1] != plan.layout.num_tokens:
        raise ValueError(f"sparse attention: q has {q.shape[1]} tokens, the plan's grid {plan.layout.grid} has "
                         f"{plan.layout.num_tokens}")
    tables = device_tables(plan, q.device)
    return torch.ops.vdrt.attention_sparse(q, k, v, *tables, plan.layout.block, eight)


def supports(q, k, v, plan=None, **kwargs) -> bool:
    """CUDA sm80+, bf16/fp16, K in {64, 128}, q/k/v of one shape, a sparse plan (8-bit: fp8 PV, sm89+)."""
    from vdrt.kernels.attention import supports as dense_supports

    return plan is not None and not plan.dense and dense_supports(q, k, v) and q.shape == k.shape


def emulate(q, k, v, plan, eight: bool, centre=None) -> torch.Tensor:
    """The kernel's numerics in torch for CPU tensors: 8-bit Q (per token) and K (smoothed, per tile)
    dequantized, then the block-sparse attention in fp32 (P kept unrounded, a small difference: the
    kernel rounds P to bf16). bf16 sparse is exact in `vdrt.sparse.attention_torch`. `centre` (B, N, K): K's
    centre in place of its exact mean (the fused rope kernel's)."""
    from vdrt import sparse

    if not eight:
        return sparse.attention_torch(q, k, v, plan)
    qc, qs = AQ.reference_rows(q, "int8")
    kc, ks = AQ.reference_blocks(k, plan.layout.starts, plan.layout.lens, "int8", centre=centre)
    tile_of = torch.repeat_interleave(torch.arange(plan.layout.lens.numel()), plan.layout.lens.long())
    qd = (qc * qs.permute(0, 2, 1)[..., None]).float()
    kd = (kc * ks[:, :, tile_of].permute(0, 2, 1)[..., None]).float()
    return sparse.attention_torch(qd, kd, v.float(), plan).to(q.dtype)


def register_ops() -> None:
    """Implementations "vdrt-sparse" and "vdrt-sparse-int8" of op "attention" (forced choices only:
    lossy). `vdrt.ops.attention` calls them with a plan only; without one it runs their dense choice."""
    from vdrt import ops

    for name, eight in (("vdrt-sparse", False), ("vdrt-sparse-int8", True)):
        ops.register("attention", name, lambda q, k, v, plan, eight=eight: run_plan(q, k, v, plan, eight),
                     supports=supports, emulate=lambda q, k, v, plan, eight=eight: emulate(q, k, v, plan, eight))
