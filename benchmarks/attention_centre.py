"""Accuracy of k's centre for the fused rope + int8 quantisation (CPU, float64 simulation of the kernels).

Subtracting any per-channel vector c from k leaves softmax unchanged (q . c is constant along a query row), so
the fused kernel may centre k on a mean it can know before it writes k's codes; the choice only changes the
quantisation error. This measures that error against float64 attention on inputs with outliers, for:
  exact     the mean over all tokens (the unfused path: a separate pass over k)
  sample256 / sample64   the mean of 256 / 64 tokens strided over the sequence (the fused default: 256)
  first128  the mean of the first 128 tokens (one key block)
  previous  the exact mean of k from another draw of the tokens with the same weights and bias (a previous step)
  none      no centring
Inputs: the q/k linears' outputs (B, L, N*K) = N(0, 1) + heavy channels (x4) and, on k, a per-channel bias
(std `bias`), RMSNorm weights near 1, then the rope reference in bf16 (what the kernels quantise).
Dense rows: `attention_int8.reference_quantized` (the kernel's algorithm in float64: Q per token, K per 128
keys, online softmax, P and V in e4m3 or P in bf16). Sparse rows (25%, 64-token tiles, K per tile): the
8-bit sparse emulation (`attention_sparse.emulate`: P unrounded, V bf16) against the masked float64 attention.

    python benchmarks/attention_centre.py --out benchmarks/results/cpu/attention_centre_<date>.json
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math

import torch

from common import Row, meta, write_rows

log = logging.getLogger("attention_centre")
CASES = {"1200tok": (4, (5, 12, 20)), "3510tok": (4, (9, 15, 26))}  # heads, grid; K = 128
CENTRES = ("exact", "sample256", "sample64", "first128", "previous", "none")


@dataclasses.dataclass
class Result(Row):
    centre: str = ""
    bias: float = 0.0
    pv: str = ""
    rel_err: float | None = None
    cos_sim: float | None = None
    rel_err_vs_exact_centre: float | None = None  # rel err / the exact mean's rel err


def qk_inputs(seq, heads, d, bias, seed):
    """Pre-rope xq, xk (1, L, N*K) with outliers; the same weights and bias for every seed offset."""
    g = torch.Generator().manual_seed(seed)
    e = heads * d
    xq, xk = torch.randn(1, seq, e, generator=g), torch.randn(1, seq, e, generator=g)
    fixed = torch.Generator().manual_seed(1234)  # the model's weights: the same for the "previous" draw
    heavy = torch.randperm(e, generator=fixed)[: 4 * heads]
    b = bias * torch.randn(e, generator=fixed)
    w = 1.0 + 0.1 * torch.randn(2, e, generator=fixed)
    xq[..., heavy] *= 4.0
    xk[..., heavy] *= 4.0
    return (xq.bfloat16(), (xk + b).bfloat16(), *w.bfloat16())


def centres(k, k_prev) -> dict:
    """(B, N, K) float64 centres of k (B, L, N, K) by kind."""
    from vdrt.kernels.rope_quant import sample_index

    kd, seq = k.double(), k.shape[1]
    return {"exact": kd.mean(1), "sample256": kd[:, sample_index(seq, 256, "cpu")].mean(1),
            "sample64": kd[:, sample_index(seq, 64, "cpu")].mean(1), "first128": kd[:, :128].mean(1),
            "previous": k_prev.double().mean(1), "none": torch.zeros_like(kd[:, 0])}


def _score(out, ref) -> tuple[float, float]:
    o, r = out.double().flatten(), ref.flatten()
    assert torch.isfinite(o).all()
    return ((o - r).norm() / r.norm()).item(), torch.nn.functional.cosine_similarity(o, r, dim=0).item()


def dense_rows(case, heads, grid, bias, m) -> list[Result]:
    from vdrt.kernels import attention_int8 as A8
    from vdrt.kernels import rope as R

    seq, d = math.prod(grid), 128
    xq, xk, wq, wk = qk_inputs(seq, heads, d, bias, seed=0)
    _, xk_prev, _, _ = qk_inputs(seq, heads, d, bias, seed=1)
    q, k = R.reference(xq, wq, heads, grid), R.reference(xk, wk, heads, grid)
    v = torch.randn(1, seq, heads, d, generator=torch.Generator().manual_seed(2)).bfloat16()
    ref = A8.reference(q, k, v)
    rows = []
    for pv_fp8 in (True, False):
        for name, c in centres(k, R.reference(xk_prev, wk, heads, grid)).items():
            out = A8.reference_quantized(q, k, v, block_n=128, pv_fp8=pv_fp8, centre=c)
            rel, cos = _score(out, ref)
            rows.append(Result("attention_centre", f"{case} dense", "int8 QK", None, **m, centre=name, bias=bias,
                               pv="fp8" if pv_fp8 else "bf16", rel_err=rel, cos_sim=cos))
    return rows


def sparse_rows(case, heads, grid, bias, m) -> list[Result]:
    from vdrt import sparse
    from vdrt.kernels import attention_sparse as S
    from vdrt.kernels import rope as R

    seq, d = math.prod(grid), 128
    plan = sparse.SparseConfig(density=0.25, block=64).plan(grid, heads)
    pos = sparse.device_index(plan.layout, "cpu")[0]
    xq, xk, wq, wk = qk_inputs(seq, heads, d, bias, seed=0)
    xk_prev = qk_inputs(seq, heads, d, bias, seed=1)[1]
    q = R.reference(xq, wq, heads, grid)[:, pos]  # rope in raster order, then the tokens in tile order
    k = R.reference(xk, wk, heads, grid)[:, pos]
    v = torch.randn(1, seq, heads, d, generator=torch.Generator().manual_seed(2)).bfloat16()
    ref = sparse.attention_torch(q.double(), k.double(), v.double(), plan)
    rows = []
    for name, c in centres(k, R.reference(xk_prev, wk, heads, grid)).items():
        rel, cos = _score(S.emulate(q, k, v, plan, True, c), ref)
        rows.append(Result("attention_centre", f"{case} sparse 25%", "int8 QK (emulated, P unrounded)", None, **m,
                           centre=name, bias=bias, pv="bf16", rel_err=rel, cos_sim=cos))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--biases", default="2,4")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    m = meta()
    rows = []
    for case in args.cases.split(","):
        heads, grid = CASES[case]
        for bias in (float(b) for b in args.biases.split(",")):
            new = dense_rows(case, heads, grid, bias, m) + sparse_rows(case, heads, grid, bias, m)
            _relative(new)
            rows += new
            write_rows(rows, args.out)


def _relative(rows: list[Result]) -> None:
    """Each row's rel err over the exact mean's in the same case, bias and PV precision."""
    base = {(r.case, r.pv): r.rel_err for r in rows if r.centre == "exact"}
    for r in rows:
        r.rel_err_vs_exact_centre = r.rel_err / base[(r.case, r.pv)]


if __name__ == "__main__":
    main()
