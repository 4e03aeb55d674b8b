"""Benchmark: dense, 8-bit and sparse 3D attention against cuDNN / FLASH / EFFICIENT SDPA, torch.compile,
FlexAttention (block-sparse) and sageattention 1.0.6, on the H200 (GPU only).

Cases (B, L, H, D), self-attention (Lq = Lk):
  wan13b   (1, 32760, 12, 128)  Wan2.1-1.3B 480p x 81 frames, grid (21, 30, 52)
  wan13b64 (1, 32760, 24, 64)   the same tokens at d=64
  8k       (1, 8190, 12, 128) and (1, 8190, 24, 64)    grid (21, 15, 26)
  wan14b   (1, 75600, 40, 128)  Wan2.1-14B 720p x 81 frames, grid (21, 45, 80)
Inputs carry realistic outliers: K gets a per-channel bias, and q and k a few heavy channels
(the 8-bit accuracy targets are set on such inputs, not on plain randn).

Every one of ours is checked before it is timed: rel err and cosine similarity against float64 on a
subset of query rows and heads (2048 rows x 4 heads; full-size float64 would take minutes); the
sparse rows against the float64 attention with the plan's mask. A variant that fails to compile or
misses its tolerance keeps its row with the error, and the others still run. Medians from
triton.testing.do_bench; TFLOP/s = 4*B*H*L^2*D / t for dense (bf16-equivalent for 8-bit), and for
sparse both the kernel's own work (visited tiles) and "effective" (dense FLOPs / t, i.e. speed-up x
dense). Ceilings (DESIGN.md, H200): cuDNN SDPA 564, bf16 GEMM 790, fp8 GEMM 1260 TFLOP/s.

Variants: the first case sweeps our kernels' compiled forms (TMA, warp specialisation, split query
halves, lazy rescaling, tiles); later cases run the fastest passing variant of each family.

    python benchmarks/attention.py --out $OUT/attention.json [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time

import torch
import torch.nn.functional as F

from common import Row, meta, write_rows

log = logging.getLogger("vdrt.bench.attention")

CEILINGS = {"cudnn": 564.0, "bf16_gemm": 790.0, "fp8_gemm": 1260.0}
CASES = {  # name: (B, L, H, D, grid)
    "wan13b": (1, 32760, 12, 128, (21, 30, 52)),
    "wan13b64": (1, 32760, 24, 64, (21, 30, 52)),
    "8k": (1, 8190, 12, 128, (21, 15, 26)),
    "8k64": (1, 8190, 24, 64, (21, 15, 26)),
    "wan14b": (1, 75600, 40, 128, (21, 45, 80)),
}
REF_ROWS, REF_HEADS = 2048, 4
FLUSH: list = []  # [path, rows]: every measured row is written at once (a crash or time limit loses nothing)
SMOKE = {"smoke": (1, 300, 2, 64, (3, 10, 10))}  # --smoke: CPU, Triton's interpreter, tiny shapes
DEVICE = "cuda"


@dataclasses.dataclass
class Result(Row):
    tflops: float | None = None  # bf16-equivalent FLOPs of the dense problem / t (sparse: "effective")
    kernel_tflops: float | None = None  # sparse: the kernel's own work / t
    pct_cudnn: float | None = None  # of the cuDNN ceiling (564)
    vs_cudnn: float | None = None  # cuDNN's time / ours, same run
    rel_err: float | None = None
    cos_sim: float | None = None
    density: float | None = None
    first_call_s: float | None = None
    error: str | None = None


# ---------------------------------------------------------------- inputs and checks


def inputs(b, n, h, d, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    q, k, v = (torch.randn(b, n, h, d, device=DEVICE, generator=g) for _ in range(3))
    heavy = torch.randperm(d, generator=torch.Generator().manual_seed(seed))[:4].to(DEVICE)
    q[..., heavy] *= 4.0  # logits of std ~3, as DiT attention has; x6 made them std ~6
    k[..., heavy] *= 4.0
    k += 2.0 * torch.randn(1, 1, h, d, device=DEVICE, generator=g)  # per-channel bias shared by all keys
    return tuple(t.bfloat16() for t in (q, k, v))


def reference(q, k, v, plan=None):
    """float64 attention of query rows [0, REF_ROWS) of the first REF_HEADS heads (plan: masked)."""
    from vdrt import sparse

    qs, ks, vs = (t[:, :, :REF_HEADS].double() for t in (q, k, v))
    s = torch.einsum("blhd,bmhd->bhlm", qs[:, :REF_ROWS], ks) / q.shape[-1] ** 0.5
    if plan is not None:
        mask = sparse.token_mask(plan, rows=slice(0, REF_ROWS)).to(q.device)
        s = s.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhlm,bmhd->blhd", torch.softmax(s, -1), vs)


def check(out, ref) -> tuple[float, float]:
    o = out[:, :REF_ROWS, :REF_HEADS].double()
    if not torch.isfinite(o).all():
        return float("inf"), 0.0
    rel = ((o - ref).norm() / ref.norm()).item()
    cos = F.cosine_similarity(o.flatten(), ref.flatten(), dim=0).item()
    return rel, cos


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn) -> float:
    if DEVICE != "cuda":  # --smoke: one timed call, for checking the script only
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=50, rep=300, return_mode="median"))


def measure(case, impl, fn, ref, flops, tol, m, cudnn_ms=None, kernel_flops=None, density=None) -> Result:
    r = Result("attention", case, impl, None, **m, density=density)
    try:
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        r.first_call_s = time.perf_counter() - t0
        if ref is not None:
            r.rel_err, r.cos_sim = check(out, ref)
            if tol is not None and not r.rel_err <= tol:
                raise RuntimeError(f"rel_err {r.rel_err:.3g} > {tol:.3g}")
        del out
        r.ms = _median_ms(fn)
    except Exception as e:  # fail soft: keep the row, run the others
        log.error("%s %s failed: %s", case, impl, e)
        r.error = f"{type(e).__name__}: {e}"[:300]
        _flush(r)
        return r
    r.tflops = flops / r.ms / 1e9
    r.pct_cudnn = 100 * r.tflops / CEILINGS["cudnn"]
    r.kernel_tflops = kernel_flops / r.ms / 1e9 if kernel_flops else None
    r.vs_cudnn = cudnn_ms / r.ms if cudnn_ms else None
    _flush(r)
    log.info("%s %-40s %8.3f ms %7.1f TFLOP/s rel %s", case, impl, r.ms, r.tflops, r.rel_err)
    return r


# ---------------------------------------------------------------- peers


def peer_rows(case, q, k, v, ref, flops, m, full: bool) -> list[Result]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # (B, H, L, D): SDPA's own layout
    backends = [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)]
    if DEVICE != "cuda":
        backends = [("math", SDPBackend.MATH)]
    if full and DEVICE == "cuda":
        backends.append(("efficient", SDPBackend.EFFICIENT_ATTENTION))
    rows = []
    for name, be in backends:
        def run(be=be):
            with sdpa_kernel([be]):
                return F.scaled_dot_product_attention(qt, kt, vt).transpose(1, 2)
        rows.append(measure(case, f"sdpa-{name}", run, ref, flops, None, m))
    if full and DEVICE == "cuda":
        comp = torch.compile(lambda a, b, c: F.scaled_dot_product_attention(a, b, c).transpose(1, 2))
        rows.append(measure(case, "torch-compile", lambda: comp(qt, kt, vt), ref, flops, None, m))
    try:
        from sageattention import sageattn
        qs, ks, vs = (t.clone() for t in (q, k, v))  # sageattn 1.0.6 smooths k IN PLACE (k -= mean): the first
        # H200 run's later rows saw a changed k (our dense rows failed their check at rel err 8.5e-3)
        rows.append(measure(case, "sageattention-1.0.6", lambda: sageattn(qs, ks, vs, tensor_layout="NHD",
                                                                          is_causal=False), ref, flops, None, m))
        del qs, ks, vs
    except ImportError as e:
        rows.append(Result("attention", case, "sageattention-1.0.6", None, **m, error=f"not installed: {e}"))
    return rows


def flex_row(case, q, k, v, plan, ref, flops, m, cudnn_ms) -> Result:
    """torch's FlexAttention with the plan as a BlockMask (compiled): the block-sparse peer."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    lay = plan.layout
    tile_of = torch.repeat_interleave(torch.arange(lay.lens.numel()), lay.lens.long()).to(DEVICE)
    tmask = plan.tile_mask().to(DEVICE)

    def mask_mod(b, h, qi, ki):
        return tmask[tile_of[qi], tile_of[ki]]

    n = q.shape[1]
    bm = create_block_mask(mask_mod, None, None, n, n, device=DEVICE, BLOCK_SIZE=128)
    flex = torch.compile(flex_attention)
    qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    return measure(case, f"flex-blocksparse-{plan.density:.2f}", lambda: flex(qt, kt, vt, block_mask=bm).transpose(1, 2),
                   ref, flops, None, m, cudnn_ms, density=plan.density)


# ---------------------------------------------------------------- ours


def dense_variants(d: int, sweep: bool):
    from vdrt.kernels.attention import DEFAULT, Variant as V

    if not sweep:
        return [DEFAULT[d]]
    return [V(128, 64, 8, 3), V(128, 64, 8, 3, tma=True), V(128, 128, 8, 2, tma=True), V(64, 64, 4, 3, tma=True),
            V(64, 64, 4, 2, tma=True), V(64, 128, 4, 2, tma=True), V(128, 64, 4, 3, tma=True),
            V(128, 64, 8, 3, tma=True, split=True), V(64, 64, 4, 3, tma=True, lazy=True),
            V(128, 64, 8, 3, tma=True, ws=True), V(64, 64, 4, 3, tma=True, ws=True)]  # WS last: riskiest


def int8_variants(sweep: bool):
    from vdrt.kernels.attention_int8 import DEFAULT, Variant8 as V

    if not sweep:
        return [DEFAULT]
    return [V(64, 64, 4, 3, tma=True), V(64, 64, 4, 2, tma=True), V(64, 64, 4, 4, tma=True), V(64, 128, 4, 2, tma=True),
            V(64, 64, 4, 3, tma=True, lazy=True), V(64, 64, 4, 3), V(64, 64, 4, 3, tma=True, pv_fp8=False),
            V(128, 128, 8, 2, tma=True), V(64, 64, 4, 3, tma=True, ws=True)]


def sparse_variants(sweep: bool):
    """(tile rows, variant) pairs: the tile size is the plan's, the variant the kernel's."""
    from vdrt.kernels.attention_sparse import SparseVariant as S

    if not sweep:
        from vdrt.kernels.attention_sparse import default_variant

        return [(64, default_variant(64, False)), (64, default_variant(64, True))]
    return [(128, S(tma=True, ws=True)), (64, S(warps=4, tma=True)), (64, S(warps=4, stages=2, tma=True)),
            (64, S(warps=4, stages=4, tma=True)), (64, S(eight=True, warps=4, tma=True)),
            (64, S(eight=True, pv_fp8=False, warps=4, tma=True)), (128, S(eight=True, tma=True, lazy=True)),
            (64, S(warps=4, tma=True, ws=True))]


def our_rows(case, q, k, v, ref, flops, m, cudnn_ms, sdpa_rel, sweep, best) -> list[Result]:
    from vdrt.kernels import attention as A
    from vdrt.kernels import attention_int8 as A8

    rows = []
    for var in (dense_variants(q.shape[-1], sweep) if "dense" not in best else [best["dense"]]):
        rows.append(measure(case, f"vdrt-dense-{var.name}", lambda var=var: A.attention_fwd(q, k, v, variant=var),
                            ref, flops, 2 * sdpa_rel + 1e-3, m, cudnn_ms))
        rows[-1].variant = var
    for var in (int8_variants(sweep) if "int8" not in best else [best["int8"]]):
        rows.append(measure(case, f"vdrt-8bit-{var.name}", lambda var=var: A8.attention_int8_fwd(q, k, v, variant=var),
                            ref, flops, 0.05, m, cudnn_ms))
        rows[-1].variant = var
    return rows


def sparse_rows(case, q, k, v, grid, flops, m, cudnn_ms, sweep, best, flex: bool) -> list[Result]:
    from vdrt.kernels import attention_sparse as S
    from vdrt.sparse import SparseConfig

    rows = []
    pairs = [best[f] for f in ("sparse", "sparse8") if f in best] or sparse_variants(sweep)
    for density in (0.25, 0.5):
        plans = {blk: SparseConfig(density=density, block=blk).plan(grid, q.shape[2]) for blk in {b for b, _ in pairs}}
        refs = {blk: reference(q, k, v, plan) for blk, plan in plans.items()}
        for blk, var in pairs:
            plan = plans[blk]
            visited = plan.counts[0, :, 1].sum().item()
            kflops = 4.0 * q.shape[0] * q.shape[2] * q.shape[3] * plan.layout.block ** 2 * visited
            tables = S.device_tables(plan, q.device)

            def run(var=var, tables=tables, plan=plan):
                return S.sparse_attention_fwd(q, k, v, *tables, plan.layout.block, variant=var)
            rows.append(measure(case, f"vdrt-{var.name}-t{blk}-{density:.2f}", run, refs[blk], flops, 0.05, m, cudnn_ms,
                                kflops, plan.density))
            rows[-1].variant = (blk, var)
        if flex and DEVICE == "cuda":
            rows.append(flex_row(case, q, k, v, plans[max(plans)], refs[max(plans)], flops, m, cudnn_ms))
    return rows


def pick_best(rows: list[Result]) -> dict:
    """The fastest passing variant of each family (dense, 8-bit, sparse bf16, sparse 8-bit)."""
    best = {}
    for r in sorted((r for r in rows if r.ms and hasattr(r, "variant")), key=lambda r: r.ms):
        if isinstance(r.variant, tuple):  # sparse: (tile rows, variant), at 25% density
            fam = "sparse8" if r.variant[1].eight else "sparse"
            if r.density is not None and r.density > 0.4:
                continue
        else:
            fam = "int8" if "8bit" in r.impl else "dense"
        best.setdefault(fam, r.variant)
    return best


# ---------------------------------------------------------------- main


def run_case(name, m, sweep, best, quick) -> list[Result]:
    from vdrt.kernels import attention as A

    b, n, h, d, grid = {**CASES, **SMOKE}[name]
    q, k, v = inputs(b, n, h, d)
    ref = reference(q, k, v)
    flops = A.flops(b, h, n, n, d)
    peers = peer_rows(name, q, k, v, ref, flops, m, full=sweep)
    cudnn = next((r for r in peers if r.impl == "sdpa-cudnn" and r.ms), None)
    cudnn_ms = cudnn.ms if cudnn else None
    sdpa_rel = cudnn.rel_err if cudnn else 1e-2
    for r in peers:
        r.vs_cudnn = cudnn_ms / r.ms if cudnn_ms and r.ms else None
    rows = peers + our_rows(name, q, k, v, ref, flops, m, cudnn_ms, sdpa_rel, sweep, best)
    if not quick or name == "wan13b":
        rows += sparse_rows(name, q, k, v, grid, flops, m, cudnn_ms, sweep, best, flex=sweep)
    del q, k, v
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/h200/attention.json")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ",".join(CASES))
    ap.add_argument("--quick", action="store_true", help="no sparse rows after the first case")
    ap.add_argument("--smoke", action="store_true", help="a tiny case on the CPU (TRITON_INTERPRET=1): checks the script")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    global DEVICE
    if args.smoke:
        DEVICE, args.cases = "cpu", "smoke,smoke"
    elif not torch.cuda.is_available():
        raise SystemExit("benchmarks/attention.py needs a CUDA GPU (or --smoke)")
    m = meta()
    rows, best = [], {}
    FLUSH[:] = [args.out + ".partial", []]
    for i, name in enumerate(args.cases.split(",")):
        case_rows = run_case(name, m, sweep=i == 0, best=best, quick=args.quick)
        if i == 0:
            best = pick_best(case_rows)
            log.info("best variants: %s", {f: _name(v) for f, v in best.items()})
        rows += case_rows
        write_rows([_plain(r) for r in rows], args.out)  # after every case: nothing lost to a time limit
    print("best:", {f: _name(v) for f, v in best.items()})
    with open(args.out.replace(".json", "") + "_best.json", "w") as f:  # read by attention_profile.py once --best
        json.dump({f: _asdict(v) for f, v in best.items()}, f, indent=1)


def _name(v) -> str:
    return f"t{v[0]}-{v[1].name}" if isinstance(v, tuple) else v.name


def _asdict(v) -> dict:
    return {"block": v[0], **dataclasses.asdict(v[1])} if isinstance(v, tuple) else dataclasses.asdict(v)


def _flush(r: Result) -> None:
    if FLUSH:
        import json
        from pathlib import Path

        FLUSH[1].append(r)
        Path(FLUSH[0]).write_text(json.dumps([_plain(x) for x in FLUSH[1]], indent=1))


def _plain(r: Result) -> dict:
    d = dataclasses.asdict(r)
    d["variant"] = _asdict(r.variant) if hasattr(r, "variant") else None
    return {k: (round(v, 5) if isinstance(v, float) and math.isfinite(v) else v) for k, v in d.items()}


if __name__ == "__main__":
    main()
