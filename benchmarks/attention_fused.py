"""Benchmark: 8-bit attention with q/k quantised inside the QK-RMSNorm + rope kernel (fused) against the unfused
path and cuDNN, at the Wan-1.3B self-attention shape, rope included in every row (GPU; --smoke on the CPU).

Inputs are the q/k linears' outputs xq, xk (1, 32760, 1536) bf16 with outliers (heavy channels x4 in both, a
per-channel bias of std 2 on xk), RMSNorm weights near 1, v (1, 32760, 12, 128); grid (21, 30, 52). Every row
starts from xq, xk, v, so the rope work is in all of them:
  rope+sdpa-cudnn          the default path: the rope kernel on q and k, then cuDNN SDPA
  rope+vdrt-int8 unfused   rope writes bf16 q/k; the 8-bit op reads them again (k's mean, the quantisers, V)
  vdrt-int8 fused          vdrt::rope_quant on q and k (k centred on the mean of 256 sampled tokens), V, kernel
  sparse 25% (tokens in tile order, 64-token tiles): rope + vdrt-sparse-int8 (bf16 PV) unfused; fused with bf16
  PV; fused with fp8 PV over the tile-padded V^T (pointer loads and TMA)
  parts: rope on q and k alone; rope_quant on q and k alone (with the centre); cuDNN SDPA alone
Each is checked against float64 attention of the bf16 rope outputs (2048 query rows x 4 heads; sparse: with the
plan's mask) before it is timed: rel err and cosine. Medians of triton.testing.do_bench.

    python benchmarks/attention_fused.py --out $OUT/attention_fused.json
    TRITON_INTERPRET=1 python benchmarks/attention_fused.py --smoke --out /tmp/attention_fused.json
"""
from __future__ import annotations

import argparse
import logging
import math

import torch

import attention as AB
from common import meta, write_rows

log = logging.getLogger("vdrt.bench.attention_fused")
CASES = {"wan13b": (32760, 12, 128, (21, 30, 52)), "smoke": (300, 2, 64, (3, 10, 10))}


def inputs(n, h, d, seed=0):
    """xq, xk (1, L, N*K), v (1, L, N, K) bf16, norm weights wq, wk (N*K,): outliers as benchmarks/attention.py."""
    dev = AB.DEVICE
    g = torch.Generator(device=dev).manual_seed(seed)
    xq, xk = (torch.randn(1, n, h * d, device=dev, generator=g) for _ in range(2))
    heavy = torch.randperm(h * d, generator=torch.Generator().manual_seed(seed))[: 4 * h].to(dev)
    xq[..., heavy] *= 4.0
    xk[..., heavy] *= 4.0
    xk += 2.0 * torch.randn(1, 1, h * d, device=dev, generator=g)  # the k linear's per-channel bias
    v = torch.randn(1, n, h, d, device=dev, generator=g)
    wq, wk = (1.0 + 0.1 * torch.randn(h * d, device=dev, generator=g) for _ in range(2))
    return (*(t.bfloat16() for t in (xq, xk, v, wq, wk)),)


def dense_rows(case, m, xq, xk, v, wq, wk, h, grid) -> list:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vdrt.kernels import attention_fused as AF
    from vdrt.kernels import attention_int8 as A8
    from vdrt.kernels import rope as R

    n, d = v.shape[1], v.shape[-1]
    q, k = R.launch(xq, wq, h, grid), R.launch(xk, wk, h, grid)
    ref, flops = AB.reference(q, k, v), 4.0 * h * n * n * d
    backend = SDPBackend.CUDNN_ATTENTION if AB.DEVICE == "cuda" else SDPBackend.MATH

    def sdpa(q, k):
        with sdpa_kernel([backend]):
            return torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)

    rows = [AB.measure(case, "sdpa-cudnn (attention only)", lambda: sdpa(q, k), ref, flops, None, m)]
    cudnn = rows[0].ms
    rows.append(AB.measure(case, "rope+sdpa-cudnn", lambda: sdpa(R.launch(xq, wq, h, grid), R.launch(xk, wk, h, grid)),
                           ref, flops, None, m, cudnn))
    rows.append(AB.measure(case, "rope+vdrt-int8 (unfused)", lambda: A8.attention_int8_fwd(
        R.launch(xq, wq, h, grid), R.launch(xk, wk, h, grid), v), ref, flops, 0.05, m, cudnn))
    rows.append(AB.measure(case, "vdrt-int8 fused (rope_quant)", lambda: AF.fused_int8(
        xq, xk, v, wq, wk, 1e-6, None, None, h, grid), ref, flops, 0.05, m, cudnn))
    rows.append(AB.measure(case, "part: rope q+k", lambda: (R.launch(xq, wq, h, grid), R.launch(xk, wk, h, grid)),
                           None, flops, None, m))
    kb = A8.op_variant(v.device).block_n
    rows.append(AB.measure(case, "part: rope_quant q+k (+ k centre)", lambda: AF.quantize_qk(
        xq, xk, wq, wk, 1e-6, h, grid, k_block=kb), None, flops, None, m))
    return rows


def sparse_rows(case, m, xq, xk, v, wq, wk, h, grid, cudnn_ms) -> list:
    from vdrt import sparse
    from vdrt.kernels import attention_fused as AF
    from vdrt.kernels import attention_sparse as S
    from vdrt.kernels import rope as R
    from vdrt.sparse import SparseConfig

    plan = SparseConfig(density=0.25, block=64).plan(grid, h)
    pos = sparse.device_index(plan.layout, v.device)[0]
    xq, xk, v = xq[:, pos], xk[:, pos], v[:, pos]  # tile order, as the Wan model keeps its tokens
    q, k = R.launch(xq, wq, h, grid, pos=pos), R.launch(xk, wk, h, grid, pos=pos)
    ref, n, d = AB.reference(q, k, v, plan), v.shape[1], v.shape[-1]
    flops, tables = 4.0 * h * n * n * d, S.device_tables(plan, v.device)
    on_gpu = AB.DEVICE == "cuda"

    def unfused():
        return S.run_plan(R.launch(xq, wq, h, grid, pos=pos), R.launch(xk, wk, h, grid, pos=pos), v, plan, True)

    def fused(pv_fp8):
        return AF.fused_sparse_int8(xq, xk, v, wq, wk, 1e-6, None, None, h, grid, pos, plan, pv_fp8=pv_fp8)

    def fp8_variant(tma):
        var = S.SparseVariant(eight=True, pv_fp8=True, warps=4, stages=3 if on_gpu else 1, tma=tma and on_gpu)
        return lambda: S.sparse_attention_fwd(R.launch(xq, wq, h, grid, pos=pos), R.launch(xk, wk, h, grid, pos=pos),
                                              v, *tables, 64, variant=var)
    runs = [("rope+vdrt-sparse-int8 25% bf16 PV (unfused)", unfused), ("vdrt-sparse-int8 25% bf16 PV fused", lambda: fused(False)),
            ("vdrt-sparse-int8 25% fp8 PV tile-padded fused", lambda: fused(True)),
            ("rope+vdrt-sparse-int8 25% fp8 PV tile-padded, TMA", fp8_variant(True)),
            ("rope+vdrt-sparse-int8 25% fp8 PV tile-padded, pointer loads", fp8_variant(False))]
    return [AB.measure(case, name, fn, ref, flops, 0.05, m, cudnn_ms, density=plan.density) for name, fn in runs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/h200/attention_fused.json")
    ap.add_argument("--smoke", action="store_true", help="a tiny case on the CPU (TRITON_INTERPRET=1): checks the script")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.smoke:
        AB.DEVICE = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("benchmarks/attention_fused.py needs a CUDA GPU (or --smoke)")
    case = "smoke" if args.smoke else "wan13b"
    n, h, d, grid = CASES[case]
    assert math.prod(grid) == n
    m = meta()
    AB.FLUSH[:] = [args.out + ".partial", []]
    tensors = inputs(n, h, d)
    rows = dense_rows(case, m, *tensors, h, grid)
    rows += sparse_rows(case, m, *tensors, h, grid, rows[0].ms)
    write_rows([AB._plain(r) for r in rows], args.out)


if __name__ == "__main__":
    main()
