"""Benchmark: dense and 8-bit attention, fp8/int8 linears and the quantize kernels (GPU only).

Shapes are Wan2.1-1.3B at 480p (81 frames -> 32760 tokens, 12 heads, head dim 128, width 1536,
FFN 8960):
- attention "self"  (1, 32760, 12, 128) x (1, 32760, 12, 128); "cross" x (1, 512, 12, 128)
  impls: vdrt (Triton), vdrt-int8 (8-bit, quantization included), each SDPA backend in its
  (B, H, L, D) layout (and a "+layout" row counting the transpose copies from (B, L, H, D)),
  torch.compile of the registry's torch path (compile time reported apart).
  TFLOP/s = 4*B*H*Lq*Lk*D / t, against cuDNN SDPA's measured 581 and the bf16 GEMM's 706.
- linear M=32760, (K, N) in (1536, 1536), (1536, 8960), (8960, 1536): bf16 F.linear vs
  vdrt fp8 / int8 (activation quantization included), TFLOP/s against 706 / 1263.
- quantize per-token / per-channel fp8 and int8 of (32760, 1536|8960) bf16: GB/s against 3.0 TB/s,
  counting the essential traffic (read 2 B, write 1 B per element, plus the scales).

Linears and quantize kernels also get "-graph" rows: the same call replayed from a CUDA graph,
i.e. GPU time without Python / launch overhead (what an engine with CUDA graphs pays).

Each of ours is checked against a float64 reference at the benchmark shape before it is timed;
rel_err = ||out - ref|| / ||ref||. A row that fails keeps its error and the others still run.
Medians from triton.testing.do_bench. Usage:
    python benchmarks/kernels_attention.py --out benchmarks/results/h100/kernels_attention.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from common import graphed

log = logging.getLogger("vdrt.bench.kernels_attention")

CEILINGS = {"bf16_gemm": 706.0, "fp8_gemm": 1263.0, "cudnn_sdpa": 581.0, "copy": 3000.0}  # TFLOP/s, GB/s
ATTN_SHAPES = {"self": ((1, 32760, 12, 128), 32760), "cross": ((1, 32760, 12, 128), 512)}
LINEAR_KN = [(1536, 1536), (1536, 8960), (8960, 1536)]
M_TOKENS = 32760
DEVICE = "cuda"


@dataclass(frozen=True)
class Config:
    bench: str  # "attention" | "linear" | "quant"
    case: str
    impl: str
    flops: float = 0.0  # per call
    nbytes: float = 0.0  # per call (memory-bound rows)
    ceiling: str = ""  # key of CEILINGS
    tol: float | None = None  # max rel_err accepted before timing (ours only)


@dataclass
class Result:
    bench: str
    case: str
    impl: str
    ms: float | None
    tflops: float | None
    gbps: float | None
    pct_of_ceiling: float | None
    ceiling: str
    rel_err: float | None
    compile_s: float | None
    device: str
    commit: str
    date: str
    error: str | None = None


class VerificationError(RuntimeError):
    pass


# ---------------------------------------------------------------- measuring


def _meta() -> dict:
    commit = os.environ.get("VDRT_COMMIT")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                    check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            log.warning("no commit id (%s); set VDRT_COMMIT", e)
            commit = "unknown"
    date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {"device": torch.cuda.get_device_name(), "commit": commit, "date": date}


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out.double() - ref).norm() / ref.norm()).item()


def measure(cfg: Config, fn: Callable[[], torch.Tensor], ref: torch.Tensor | None, meta: dict) -> Result:
    """First call (compile / autotune) timed apart, verify vs ref, then the do_bench median."""
    from triton.testing import do_bench

    res = Result(cfg.bench, cfg.case, cfg.impl, None, None, None, None, cfg.ceiling, None, None, **meta)
    try:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        res.compile_s = time.perf_counter() - t0
        if ref is not None:
            res.rel_err = _rel_err(out, ref)
            if cfg.tol is not None and not res.rel_err <= cfg.tol:
                raise VerificationError(f"rel_err {res.rel_err:.3g} > tolerance {cfg.tol:.3g}")
        del out
        res.ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
    except Exception as e:  # fail soft: keep the row with its error, run the others
        log.error("%s/%s/%s failed: %s", cfg.bench, cfg.case, cfg.impl, e)
        res.error = f"{type(e).__name__}: {e}"[:500]
    _rates(cfg, res)
    return res


def measure_graphed(cfg: Config, fn, ref, meta: dict) -> Result:
    """`measure` of `fn` replayed from a CUDA graph (impl gets a "-graph" suffix)."""
    return measure(replace(cfg, impl=cfg.impl + "-graph"), graphed(fn), ref, meta)  # capture errors fail soft


def _rates(cfg: Config, res: Result) -> None:
    if res.ms is None:
        return
    sec = res.ms * 1e-3
    if cfg.flops:
        res.tflops = cfg.flops / sec / 1e12
        res.pct_of_ceiling = 100 * res.tflops / CEILINGS[cfg.ceiling] if cfg.ceiling else None
    if cfg.nbytes:
        res.gbps = cfg.nbytes / sec / 1e9
        if not cfg.flops and cfg.ceiling:
            res.pct_of_ceiling = 100 * res.gbps / CEILINGS[cfg.ceiling]


# ---------------------------------------------------------------- attention


def _sdpa_rows(case, q, k, v, flops, ref, meta):
    """Each SDPA backend on (B, H, L, D) inputs, then with the layout copies from (B, L, H, D)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    ref_t = ref.transpose(1, 2)
    rows = []
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        def bhld(backend=backend):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(qt, kt, vt)

        def blhd(backend=backend):
            with sdpa_kernel([backend]):
                o = F.scaled_dot_product_attention(*(t.transpose(1, 2).contiguous() for t in (q, k, v)))
            return o.transpose(1, 2).contiguous()

        rows.append(measure(Config("attention", case, f"sdpa-{name}", flops, ceiling="cudnn_sdpa"), bhld, ref_t, meta))
        rows.append(measure(Config("attention", case, f"sdpa-{name}+layout", flops, ceiling="cudnn_sdpa"), blhd, ref,
                            meta))
    return rows


def attention_rows(meta: dict) -> list[Result]:
    rows = []
    for case, (shape, lk) in ATTN_SHAPES.items():
        rows += _attention_case(case, shape, lk, meta)
        torch.cuda.empty_cache()
    return rows


def _attention_case(case: str, shape: tuple, lk: int, meta: dict) -> list[Result]:
    from vdrt import ops
    from vdrt.kernels import attention as A
    from vdrt.kernels import attention_int8 as A8

    b, lq, h, d = shape
    label = f"{case} q{b}x{lq}x{h}x{d} k{lk}"
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    q, k, v = (torch.randn(b, n, h, d, device=DEVICE, generator=gen, dtype=torch.bfloat16) for n in (lq, lk, lk))
    ref = A.reference(q, k, v, chunk=1024)
    flops = A.flops(b, h, lq, lk, d)
    sdpa_rel = _rel_err(ops.attention_torch(q, k, v), ref)

    def cfg(impl, tol):
        return Config("attention", label, impl, flops, ceiling="cudnn_sdpa", tol=tol)

    compiled = torch.compile(ops.attention_torch)
    return [
        measure(cfg("vdrt", 2 * sdpa_rel + 1e-3), lambda: torch.ops.vdrt.attention(q, k, v), ref, meta),
        measure(cfg("vdrt-int8", 0.05), lambda: torch.ops.vdrt.attention_int8(q, k, v), ref, meta),
        measure(cfg("vdrt-int8-bn128", 0.05), lambda: A8.attention_int8_fwd(q, k, v, block_n=128), ref, meta),
        measure(cfg("vdrt-int8-bf16pv", 0.03), lambda: A8.attention_int8_fwd(q, k, v, pv_fp8=False), ref, meta),
        _int8_prep_row(label, q, k, v, meta),
        *_sdpa_rows(label, q, k, v, flops, ref, meta),
        measure(cfg("torch-compile", None), lambda: compiled(q, k, v), ref, meta),
    ]


def _int8_prep_row(label, q, k, v, meta) -> Result:
    """The 8-bit kernel's quantization of Q, K, V alone (reads 2 bytes, writes 1 byte per element)."""
    from vdrt.kernels import attention_int8 as A8

    bm, bn = A8.GPU_BLOCKS

    def prep():
        A8.quantize_qk(q, bm, extra_scale=1.0)
        A8.quantize_qk(k, bn, mean=k.mean(dim=1, dtype=torch.float32).contiguous())
        return A8.quantize_v_fp8(v, bn)[0]

    nbytes = 3 * (q.numel() + k.numel() + v.numel())  # essential: read 2 B, write 1 B per element
    return measure(Config("attention", label, "vdrt-int8-prep", nbytes=nbytes, ceiling="copy"), prep, None, meta)


# ---------------------------------------------------------------- linears


def linear_rows(meta: dict) -> list[Result]:
    rows = []
    for k, n in LINEAR_KN:
        rows += _linear_case(k, n, meta)
        torch.cuda.empty_cache()
    return rows


def _linear_case(k: int, n: int, meta: dict) -> list[Result]:
    label = f"M{M_TOKENS} K{k} N{n}"
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    x = torch.randn(M_TOKENS, k, device=DEVICE, generator=gen).bfloat16()
    w = (torch.randn(n, k, device=DEVICE, generator=gen) * k ** -0.5).bfloat16()
    bias = torch.randn(n, device=DEVICE, generator=gen).bfloat16()
    ref = F.linear(x.double(), w.double(), bias.double())
    flops = 2.0 * M_TOKENS * k * n
    cfg = Config("linear", label, "torch-bf16", flops, ceiling="bf16_gemm")
    bf16 = [measure(cfg, lambda: F.linear(x, w, bias), ref, meta),
            measure_graphed(cfg, lambda: F.linear(x, w, bias), ref, meta)]
    return [*bf16, *_quantized_linear_rows(label, x, w, bias, ref, flops, meta)]


def _quantized_linear_rows(label, x, w, bias, ref, flops, meta) -> list[Result]:
    from vdrt.kernels import quant as Q

    rows = []
    for kind, op in (("fp8", torch.ops.vdrt.fp8_linear), ("int8", torch.ops.vdrt.int8_linear)):
        try:
            wq, ws = Q.quantize_linear_weight(w, kind)
        except Exception as e:  # fail soft
            rows.append(_error_row("linear", label, f"vdrt-{kind}", e, meta))
            continue
        cfg = Config("linear", label, f"vdrt-{kind}", flops, ceiling="fp8_gemm", tol=0.06)
        rows.append(measure(cfg, lambda op=op, wq=wq, ws=ws: op(x, wq, ws, bias), ref, meta))
        rows.append(measure_graphed(cfg, lambda op=op, wq=wq, ws=ws: op(x, wq, ws, bias), ref, meta))
    xq, xs = Q.quantize_rows(x, "fp8")
    wq, ws = Q.quantize_linear_weight(w, "fp8")
    gemm = lambda: torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=ws.reshape(1, -1), bias=bias,  # noqa: E731
                                    out_dtype=torch.bfloat16, use_fast_accum=True)
    rows.append(measure(Config("linear", label, "vdrt-fp8-gemm-only", flops, ceiling="fp8_gemm", tol=0.06), gemm,
                        ref, meta))
    return rows


def _error_row(bench, case, impl, e, meta) -> Result:
    log.error("%s/%s/%s failed: %s", bench, case, impl, e)
    return Result(bench, case, impl, None, None, None, None, "", None, None, **meta, error=f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------- quantize kernels


def quant_rows(meta: dict) -> list[Result]:
    from vdrt.kernels import quant as Q

    rows = []
    for c in (1536, 8960):
        gen = torch.Generator(device=DEVICE).manual_seed(2)
        x = torch.randn(M_TOKENS, c, device=DEVICE, generator=gen).bfloat16()
        for kind in ("fp8", "int8"):
            for axis, fn, dim in (("token", Q.quantize_per_token_fwd, -1), ("channel", Q.quantize_per_channel_fwd, 0)):
                ref_q, ref_s = Q.reference_quantize(x, kind, dim=dim)
                ref = Q.reference_dequantize(ref_q, ref_s, torch.float64)
                nbytes = x.numel() * 3 + 4 * (M_TOKENS if axis == "token" else c)
                cfg = Config("quant", f"M{M_TOKENS} C{c}", f"vdrt-{kind}-per-{axis}", nbytes=nbytes, ceiling="copy",
                             tol=1e-3)
                rows.append(_quant_row(cfg, fn, x, kind, ref, meta))
                if rows[-1].error is None:  # verified just above; now without launch overhead
                    rows.append(measure_graphed(cfg, lambda fn=fn, kind=kind: fn(x, kind)[0], None, meta))
                if axis == "token" and c > 2048:  # the former launch: two passes over 2048-wide blocks
                    rows.append(_two_pass_row(cfg, fn, x, kind, ref, meta))
        del x
        torch.cuda.empty_cache()
    return rows


def _quant_row(cfg: Config, fn, x, kind, ref, meta) -> Result:
    """Verify the dequantized codes against the reference's, then time the quantize call alone."""
    from vdrt.kernels import quant as Q

    try:
        rel = _rel_err(Q.dequantize_fwd(*fn(x, kind), torch.float32), ref)
    except Exception as e:  # fail soft
        return _error_row(cfg.bench, cfg.case, cfg.impl, e, meta)
    if not rel <= cfg.tol:
        return _error_row(cfg.bench, cfg.case, cfg.impl, VerificationError(f"rel_err {rel:.3g} > {cfg.tol}"), meta)
    res = measure(cfg, lambda: fn(x, kind)[0], None, meta)
    res.rel_err = rel
    return res



def _two_pass_row(cfg: Config, fn, x, kind, ref, meta) -> Result:
    from vdrt.kernels import quant as Q

    old, Q.ONE_PASS_MAX_C = Q.ONE_PASS_MAX_C, 2048
    try:
        res = _quant_row(replace(cfg, impl=cfg.impl + "-twopass"), fn, x, kind, ref, meta)
        if res.error is None:
            res = measure_graphed(replace(cfg, impl=cfg.impl + "-twopass"), lambda: fn(x, kind)[0], None, meta)
        return res
    finally:
        Q.ONE_PASS_MAX_C = old


# ---------------------------------------------------------------- main


def _table(rows: list[Result]) -> str:
    head = (f"{'bench':9} {'case':32} {'impl':24} {'ms':>9} {'TFLOP/s':>8} {'GB/s':>7} {'%ceil':>6} "
            f"{'rel_err':>9}  error")
    lines = [head, "-" * len(head)]
    fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
    for r in rows:
        lines.append(f"{r.bench:9} {r.case:32} {r.impl:24} {fmt(r.ms, '9.3f')} {fmt(r.tflops, '8.1f')} "
                     f"{fmt(r.gbps, '7.0f')} {fmt(r.pct_of_ceiling, '6.1f')} {fmt(r.rel_err, '9.2e')}  {r.error or ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/kernels_attention.json", help="JSON rows written here")
    ap.add_argument("--only", choices=["attention", "linear", "quant"], action="append",
                    help="run only these benches (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not torch.cuda.is_available():
        raise SystemExit("kernels_attention needs a CUDA GPU (run it on the H100)")
    meta = _meta()
    rows: list[Result] = []
    for name, fn in (("attention", attention_rows), ("linear", linear_rows), ("quant", quant_rows)):
        if not args.only or name in args.only:
            rows += fn(meta)
            _write(args.out, rows)  # keep what we have if a later bench dies
    print(_table(rows))
    return 0


def _write(path: str, rows: list[Result]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump([asdict(r) for r in rows], f, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
