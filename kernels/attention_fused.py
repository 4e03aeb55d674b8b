"""Self-attention whose q and k leave the QK-RMSNorm + rope kernel as int8 codes: the fused forms of the
"vdrt-int8" and "vdrt-sparse-int8" attention choices (op "rope_attention" in `vdrt.ops`).

Shapes (one alphabet): xq, xk (B, L, N*K) the q/k linears' outputs, v (B, L, N, K), tokens in the order of
`pos` (sparse attention's tile order) or raster order -> (B, L, N, K) in v's dtype.

Per call:
1. k's centre (B, N, K): the mean of rope(norm(k)) over `rope_quant.CENTRE_SAMPLES` tokens strided over the
   sequence (the rope kernel on 256 tokens: ~0.8% of k at 32760 tokens). Any per-channel centre leaves
   softmax unchanged (q . c is constant along a query row), so this is exact math; only the quantisation
   error depends on how well it centres k (measured: benchmarks/attention_centre.py).
2. `vdrt::rope_quant` on q (a scale per token and head, softmax scale * log2 e folded in) and on k (centred,
   a scale per key block of the dense kernel, or per 3D tile of the sparse plan).
3. `vdrt::attention_int8_codes` or `vdrt::attention_sparse_codes` (V per channel to e4m3 there).
The unfused path wrote bf16 q and k, then read them again for the quantisers and k's mean: that traffic is
gone (3 reads + 2 writes of a bf16 (L, N*K) tensor per layer).

Cost model: the rope_quant kernels (see that module) plus the attention kernel of the choice.
"""
from __future__ import annotations

import torch

from vdrt.kernels import attention_int8 as A8
from vdrt.kernels import attention_sparse as S
from vdrt.kernels import rope as R
from vdrt.kernels import rope_quant as RQ
from vdrt.kernels.attention import LOG2E

Q_BLOCK = 64  # q rows per program of the fused kernel (per-token scales: the block is only the work split)
THETA = 10000.0


def quantize_qk(xq, xk, wq, wk, eps: float, num_heads: int, grid, pos=None, k_blocks=None, k_block: int = 128):
    """(B, L, N*K) x2 -> q8 (B, L, N, K), qs (B, N, L), k8 (B, L, N, K), ks (B, N, NB) through vdrt::rope_quant;
    k's blocks: uniform of `k_block` rows, or k_blocks = (starts, lens) (the sparse plan's tiles)."""
    wq, wk = (w.to(xq.dtype) if w is not None else None for w in (wq, wk))
    d = xq.shape[-1] // num_heads
    centre = RQ.centre_of(xk, wk, num_heads, grid, "sample", eps, pos)
    starts, lens = k_blocks if k_blocks is not None else (None, None)
    q8, qs = torch.ops.vdrt.rope_quant(xq, wq, None, pos, None, None, num_heads, *grid, Q_BLOCK, True,
                                       d ** -0.5 * LOG2E, eps, THETA)
    k8, ks = torch.ops.vdrt.rope_quant(xk, wk, centre, pos, starts, lens, num_heads, *grid, k_block, False, 1.0,
                                       eps, THETA)
    return q8, qs, k8, ks


def fused_int8(xq, xk, v, wq, wk, eps, cos, sin, num_heads: int, grid, pos=None, plan=None) -> torch.Tensor:
    """Dense 8-bit attention with q/k quantised by the rope kernel (the registry's calling convention)."""
    block_n = A8.op_variant(v.device).block_n
    q8, qs, k8, ks = quantize_qk(xq, xk, wq, wk, eps, num_heads, grid, pos, k_block=block_n)
    return torch.ops.vdrt.attention_int8_codes(q8, qs, k8, ks, v)


def fused_sparse_int8(xq, xk, v, wq, wk, eps, cos, sin, num_heads: int, grid, pos=None, plan=None,
                      pv_fp8: bool = False) -> torch.Tensor:
    """Block-sparse 8-bit attention over `plan`'s tiles with q/k quantised by the rope kernel."""
    tables = S.device_tables(plan, v.device)
    block = plan.layout.block
    q8, qs, k8, ks = quantize_qk(xq, xk, wq, wk, eps, num_heads, grid, pos, tables[:2], block)
    return torch.ops.vdrt.attention_sparse_codes(q8, qs, k8, ks, v, *tables, block, pv_fp8)


# ---------------------------------------------------------------- registry


def supports(xq, xk, v, wq, wk, eps, cos, sin, num_heads, grid, pos=None, plan=None) -> bool:
    """The kernels take it: CUDA sm80+, bf16/fp16, K in {64, 128}, q/k norm weights (Wan's qk_norm), q and k
    of one shape; sparse: a plan that is not dense."""
    from vdrt.kernels.attention import supports as attention_supports

    if wq is None or wk is None or xq.shape != xk.shape or not R.supports(xk, wk.to(xk.dtype), num_heads, grid):
        return False
    pos_ok = pos is None or (pos.device == xq.device and pos.shape == (xq.shape[1],))
    return pos_ok and attention_supports(v, v, v)


def emulate(xq, xk, v, wq, wk, eps, cos, sin, num_heads, grid, pos=None, plan=None) -> torch.Tensor:
    """The fused numerics in torch for CPU tensors: torch rope, k centred on the same sampled mean the
    kernel path uses, then the 8-bit emulation of the attention choice (dense, or sparse with `plan`)."""
    from vdrt import ops

    q = ops.rope_qk_norm_torch(xq, wq, eps, cos, sin, num_heads, grid)
    k = ops.rope_qk_norm_torch(xk, wk, eps, cos, sin, num_heads, grid)
    idx = RQ.sample_index(k.shape[1], RQ.CENTRE_SAMPLES, k.device)
    centre = k[:, idx].double().mean(1)  # (B, N, K): rope is per token, so this is the kernel path's centre
    if plan is None or plan.dense:
        return A8.emulate(q, k, v, centre)
    return S.emulate(q, k, v, plan, True, centre)


def register_ops() -> None:
    """Implementations "vdrt-int8" and "vdrt-sparse-int8" of op "rope_attention" (run only under those
    attention choices: `vdrt.ops.rope_attention`)."""
    from vdrt import ops

    def sparse_ok(*args, plan=None, **kw):
        return plan is not None and not plan.dense and supports(*args, plan=plan, **kw)

    ops.register("rope_attention", "vdrt-int8", fused_int8, supports=supports, emulate=emulate)
    ops.register("rope_attention", "vdrt-sparse-int8", fused_sparse_int8, supports=sparse_ok, emulate=emulate)
