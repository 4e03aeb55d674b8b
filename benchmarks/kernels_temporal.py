"""Benchmark: temporal attention, the fused adaLN chain and RMSNorm+3-D RoPE (GPU only).

Temporal attention, cases "seqs x heads x T x d" in the native (B=1, F=T, S=seqs, H, D) layout:
  vdrt-triton (default heuristic, plus a few BLOCK_M/num_warps variants and fused-qkv views),
  vdrt-cuda (NVRTC), every SDPA backend (sdpa-flash/-efficient/-cudnn/-math) counting the
  permute copies from and back to the native layout, and the same "[kernel-only]" on
  pre-permuted inputs, torch.compile of the plain-torch reference (compile time apart) and the
  eager reference. bytes = 4*N*T*D*2 (q, k, v read, o written once).
adaLN at 32760 x 1536 (Wan2.1-1.3B, 480p): modulate only, residual+gate, residual+gate+fp8;
RoPE: (1, 32760, 12*128) with the (21, 30, 52) grid. Each vs eager and torch.compile of the
reference, and a "copy" row: a plain device copy of the same byte count (the ceiling).

Every row of ours is checked against the float64 reference at the benchmark shape before it
is timed: max_err must be within 3x torch's own bf16 error (+1 ulp); rel_err = ||out-ref||/||ref||.
A failing row keeps its error string and the others still run. Medians from
triton.testing.do_bench; GB/s against the H100's measured 3.0 TB/s copy ceiling. "-graph" rows
replay the same call from a CUDA graph (GPU time without Python / launch overhead). Usage:
    python benchmarks/kernels_temporal.py --out benchmarks/results/h100/kernels_temporal.json
"""
from __future__ import annotations

import argparse
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from common import graphed, median_ms, meta, write_rows

log = logging.getLogger("vdrt.bench.kernels_temporal")

COPY_GBPS = 3000.0
TA_CASES = {"4096x16x16x64": (4096, 16, 16, 64), "9216x5x25x64": (9216, 5, 25, 64),
            "2048x16x16x72": (2048, 16, 16, 72), "65536x2x16x64": (65536, 2, 16, 64)}
TRITON_VARIANTS = [(4, 4), (8, 4), (16, 8)]  # (BLOCK_M, num_warps) besides the heuristic's
M_TOKENS, WIDTH, HEADS, GRID = 32760, 1536, 12, (21, 30, 52)
DEVICE = "cuda"


@dataclass
class Result:
    bench: str
    case: str
    impl: str
    ms: float | None
    gbps: float | None
    pct_of_copy: float | None
    rel_err: float | None
    max_err: float | None
    torch_err: float | None
    compile_s: float | None
    device: str
    commit: str
    date: str
    error: str | None = None


@dataclass(frozen=True)
class Case:
    """One (bench, case): the byte count, the float64 reference and torch's own bf16 output."""
    bench: str
    name: str
    nbytes: float
    ref64: torch.Tensor | None
    torch_lowp: torch.Tensor | None


# ---------------------------------------------------------------- measuring


def _errors(out: torch.Tensor, case: Case) -> tuple[float, float, float]:
    ref = case.ref64
    diff = out.double() - ref
    if not torch.isfinite(diff).all():
        return float("inf"), float("inf"), float("inf")
    torch_err = (case.torch_lowp.double() - ref).abs().max().item()
    return (diff.norm() / ref.norm()).item(), diff.abs().max().item(), torch_err


def _verify(out: torch.Tensor, case: Case) -> tuple[float, float, float]:
    rel, err, torch_err = _errors(out, case)
    tol = 3.0 * torch_err + torch.finfo(torch.bfloat16).eps * case.ref64.abs().max().item()
    if not err <= tol:
        raise RuntimeError(f"verification failed: max_err {err:.3g} > {tol:.3g} (torch's own {torch_err:.3g})")
    return rel, err, torch_err


def measure(case: Case, impl: str, fn: Callable, check: Callable | None = None, rep_ms: int = 500) -> Result:
    """Time fn (first call = compile/warm-up, reported apart); check(first output) verifies ours."""
    m = meta()
    row = Result(case.bench, case.name, impl, None, None, None, None, None, None, None,
                 m["device"], m["commit"], m["date"])
    try:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        row.compile_s = time.perf_counter() - t0
        if check is not None:
            row.rel_err, row.max_err, row.torch_err = check(out)
        del out
        row.ms = median_ms(fn, rep_ms=rep_ms)
        row.gbps = case.nbytes / row.ms / 1e6
        row.pct_of_copy = 100.0 * row.gbps / COPY_GBPS
    except Exception as e:  # noqa: BLE001  (fail soft: the row keeps the error, the others run)
        row.error = f"{type(e).__name__}: {e}"[:300]
        log.warning("%s %s %s failed: %s", case.bench, case.name, impl, row.error)
    torch.cuda.empty_cache()
    return row


def copy_row(case: Case, rep_ms: int) -> Result:
    """The ceiling: a device copy reading and writing case.nbytes in total."""
    src = torch.empty(int(case.nbytes // 4), dtype=torch.int16, device=DEVICE)
    dst = torch.empty_like(src)
    return measure(case, "copy", lambda: dst.copy_(src), rep_ms=rep_ms)


# ---------------------------------------------------------------- temporal attention


def _sdpa_backends() -> dict[str, object]:
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def _sdpa_native(q, k, v):
    """SDPA from and back to the native layout: (B, F, S, H, D) -> (B*S, H, F, D) copies -> back."""
    b, f, s, h, d = q.shape

    def seqs(x):
        return x.permute(0, 2, 3, 1, 4).reshape(b * s, h, f, d)

    o = F.scaled_dot_product_attention(seqs(q), seqs(k), seqs(v))
    return o.reshape(b, s, h, f, d).permute(0, 3, 1, 2, 4).contiguous()


def _sdpa_rows(case: Case, q, k, v, rep_ms: int) -> list[Result]:
    from torch.nn.attention import sdpa_kernel

    b, f, s, h, d = q.shape
    pre = [x.permute(0, 2, 3, 1, 4).reshape(b * s, h, f, d).contiguous() for x in (q, k, v)]
    rows = []
    for name, backend in _sdpa_backends().items():
        with sdpa_kernel(backend):
            rows.append(measure(case, f"sdpa-{name}", lambda: _sdpa_native(q, k, v), rep_ms=rep_ms))
            rows.append(measure(case, f"sdpa-{name}[kernel-only]",
                                lambda: F.scaled_dot_product_attention(*pre), rep_ms=rep_ms))
    return rows


def temporal_rows(rep_ms: int) -> list[Result]:
    rows = []
    for name, shape in TA_CASES.items():
        rows += _temporal_case(name, shape, rep_ms)
        torch.cuda.empty_cache()
    return rows


def _temporal_case(name: str, shape: tuple[int, int, int, int], rep_ms: int) -> list[Result]:
    from vdrt.kernels import temporal_attention as ta

    seqs, heads, t, d = shape
    qkv = torch.randn(1, t, seqs, 3, heads, d, device=DEVICE, dtype=torch.bfloat16)
    q, k, v = (x.contiguous() for x in qkv.unbind(3))
    case = Case("temporal_attention", name, 4.0 * q.numel() * 2,
                ta.reference(q.double(), k.double(), v.double()), ta.reference(q, k, v))
    rows = _temporal_ours(case, ta, q, k, v, qkv, rep_ms)
    rows += _sdpa_rows(case, q, k, v, rep_ms)
    compiled = torch.compile(ta.reference)
    rows.append(measure(case, "torch.compile(reference)", lambda: compiled(q, k, v), rep_ms=rep_ms))
    rows.append(measure(case, "eager(reference)", lambda: ta.reference(q, k, v), rep_ms=rep_ms))
    rows.append(copy_row(case, rep_ms))
    return rows


def _temporal_ours(case, ta, q, k, v, qkv, rep_ms) -> list[Result]:
    def check(out):
        return _verify(out, case)

    t, d = q.shape[1], q.shape[-1]
    bm, nw = ta.launch_config(t, d)
    rows = [measure(case, f"vdrt-triton[bm{bm}w{nw}]", lambda: ta.launch(q, k, v), check, rep_ms)]
    views = qkv.unbind(3)
    rows.append(measure(case, "vdrt-triton[qkv-views]", lambda: ta.launch(*views), check, rep_ms))
    if bm > 1:  # the batched-dot path: a few other packings
        for vbm, vnw in TRITON_VARIANTS:
            if (vbm, vnw) != (bm, nw):
                run = functools.partial(ta.launch, q, k, v, block_m=vbm, num_warps=vnw)
                rows.append(measure(case, f"vdrt-triton[bm{vbm}w{vnw}]", run, check, rep_ms))
    rows.append(_cuda_row(case, q, k, v, check, rep_ms))
    return rows


def _cuda_row(case, q, k, v, check, rep_ms) -> Result:
    try:
        from vdrt.cuda import temporal_attention as cta
    except ImportError as e:
        m = meta()
        return Result(case.bench, case.name, "vdrt-cuda", *([None] * 7), m["device"], m["commit"], m["date"],
                      error=f"ImportError: {e}")
    return measure(case, "vdrt-cuda", lambda: cta.launch(q, k, v), check, rep_ms)


# ---------------------------------------------------------------- adaLN and RoPE


def _adaln_inputs():
    x = torch.randn(1, M_TOKENS, WIDTH, device=DEVICE, dtype=torch.bfloat16)
    y = torch.randn_like(x)
    mod = torch.randn(1, 6, WIDTH, device=DEVICE)  # Wan's fp32 modulation chunks
    return {"x": x, "shift": mod[:, 0:1], "scale": mod[:, 1:2] * 0.5, "y": y, "gate": mod[:, 2:3]}


def adaln_rows(rep_ms: int) -> list[Result]:
    from vdrt.kernels import adaln as A

    kw, rows = _adaln_inputs(), []
    n = M_TOKENS * WIDTH
    variants = {"modulate": ({"y": None, "gate": None}, 2 * n * 2),
                "residual": ({}, 4 * n * 2),
                "residual+fp8": ({"fp8": True}, 3 * n * 2 + n + 4 * M_TOKENS)}
    for name, (extra, nbytes) in variants.items():
        rows += _adaln_case(A, f"{name} {M_TOKENS}x{WIDTH}", {**kw, **extra}, nbytes, rep_ms)
    return rows


def _adaln_case(A, name: str, args: dict, nbytes: float, rep_ms: int) -> list[Result]:
    f64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in args.items() if k != "fp8"}
    ref, low = A.reference(**f64), A.reference(**args)
    fp8 = args.get("fp8", False)
    case = Case("adaln", name, nbytes, ref[0], low[0].float() * low[2] if fp8 else low[0])

    def check(out):  # the fp8 rows compare what the next linear sees: q * s
        return _verify(out[0].float() * out[2] if fp8 else out[0], case)

    compiled = torch.compile(A.reference)
    ours, theirs = functools.partial(A.launch, **args), functools.partial(compiled, **args)
    return [measure(case, "vdrt-triton", ours, check, rep_ms),
            measure(case, "vdrt-triton-graph", graphed(ours), check, rep_ms),
            measure(case, "torch.compile(reference)", theirs, rep_ms=rep_ms),
            measure(case, "torch.compile(reference)-graph", graphed(theirs), rep_ms=rep_ms),
            measure(case, "eager(reference)", functools.partial(A.reference, **args), rep_ms=rep_ms),
            copy_row(case, rep_ms)]


def rope_rows(rep_ms: int) -> list[Result]:
    from vdrt.kernels import rope as R

    x = torch.randn(1, M_TOKENS, WIDTH, device=DEVICE, dtype=torch.bfloat16)
    w = torch.randn(WIDTH, device=DEVICE)
    case = Case("rope_qk_norm", f"{M_TOKENS}x{HEADS}x{WIDTH // HEADS}", 2.0 * x.numel() * 2,
                R.reference(x.double(), w.double(), HEADS, GRID), R.reference(x, w, HEADS, GRID))
    ours = lambda: R.launch(x, w, HEADS, GRID)  # noqa: E731
    rows = [measure(case, "vdrt-triton", ours, lambda o: _verify(o, case), rep_ms),
            measure(case, "vdrt-triton-graph", graphed(ours), lambda o: _verify(o, case), rep_ms)]
    compiled = torch.compile(R.reference, dynamic=False)
    rows.append(measure(case, "torch.compile(reference)", lambda: compiled(x, w, HEADS, GRID), rep_ms=rep_ms))
    rows.append(measure(case, "eager(reference)", lambda: R.reference(x, w, HEADS, GRID), rep_ms=rep_ms))
    rows.append(copy_row(case, rep_ms))
    return rows


BENCHES = {"temporal": temporal_rows, "adaln": adaln_rows, "rope": rope_rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="JSON file for the rows")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run these benches only")
    p.add_argument("--rep-ms", type=int, default=500, help="do_bench repetition time per row")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not torch.cuda.is_available():
        raise SystemExit("kernels_temporal.py needs a CUDA GPU")
    rows = []
    for name in a.only or list(BENCHES):
        rows += BENCHES[name](a.rep_ms)
    write_rows(rows, a.out)


if __name__ == "__main__":
    main()
