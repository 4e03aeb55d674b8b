"""fp8 linears fed by their producers vs separate quantization vs bf16, at every Wan2.1 linear shape.

    python benchmarks/fp8_producers.py --out $OUT/fp8_producers.json                 # 1.3B and 14B shapes
    python benchmarks/fp8_producers.py --step wan2.1-t2v-1.3b --out $OUT/fp8_step.json --no-chains
    python benchmarks/fp8_producers.py --tiny --out /tmp/x.json                       # CPU smoke run

Chains (M tokens, D model dim, F FFN dim; each option timed as a whole, activation quantization included):
    qkv      adaLN (B, M, D) -> three (D -> D) linears      producer: adaLN writes e4m3 + scales once
    ffn_in   adaLN (B, M, D) -> one (D -> F) linear         producer: adaLN writes e4m3 + scales
    ffn_out  GELU (B, M, F) -> one (F -> D) linear          producer: GELU + quantize in one kernel
    o        attention output (B, M, D) -> (D -> D)         no producer (the attention writes bf16)
Options: bf16 (cuBLAS F.linear after a bf16 producer), fp8-separate ("vdrt-fp8-separate": each linear
quantizes its bf16 input in its own pass), fp8-producer ("vdrt-fp8" fed a QuantizedActivation).
`linear_ms` = chain_ms - the bf16 producer's own time: the linears' cost with quantization included
(for fp8-producer: the GEMMs plus what writing fp8 instead of bf16 costs the producer). The issue's
target is speedup_linear >= 1.6 at every shape. `gemm` rows time the GEMM alone on ready inputs.
Correctness at the same shapes: rel_err = |y - ref| / |ref - bias| against an fp32 reference of the
chain from the same bf16 inputs and weights (float64 on the CPU), checked against a bound (`ok`).
--step PRESET adds one denoiser step (480p x 81f, random weights) with each option (torch/kernels auto);
--card CARD one forward of a trained embedded model in fp32 and bf16 per option (rel_err vs fp32, torch ops).
Rows: bench "fp8_producers", case, impl, ms, tflops, speedups, rel_err, ok, device, commit, date, torch.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import Row, median_ms, meta, write_rows

log = logging.getLogger("fp8_producers")
SHAPES = {"1.3b": (1536, 8960), "14b": (5120, 13824), "tiny": (64, 128)}  # (D, F)
OPTIONS = ("bf16", "fp8-separate", "fp8-producer")
BOUND = {"bf16": 0.02, "fp8-separate": 0.06, "fp8-producer": 0.06}  # rel_err bounds (e4m3: ~3.7% typical)
TARGET = 1.6


@dataclass
class Result(Row):
    tflops: float | None = None
    linear_ms: float | None = None
    speedup_chain: float | None = None
    speedup_linear: float | None = None
    target: float | None = None
    rel_err: float | None = None
    rel_diff_vs_separate: float | None = None
    ok: bool | None = None
    error: str | None = None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="1.3b,14b", help="shape sets: 1.3b, 14b, tiny")
    p.add_argument("--tokens", type=int, default=32760)
    p.add_argument("--step", action="append", default=[], help="a Wan preset to time one step of (repeatable)")
    p.add_argument("--no-chains", action="store_true")
    p.add_argument("--card", default=None, help="a trained embedded model's card: one forward per option (CPU)")
    p.add_argument("--tiny", action="store_true", help="CPU smoke size: tiny shapes, 64 tokens, wan-tiny step")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.tiny:
        args.models, args.tokens, args.step = "tiny", 64, args.step or ["wan-tiny"]
    return args


def timer(fn) -> float:
    """Median ms: CUDA events (do_bench) on the GPU, perf_counter over 5 calls after one warm-up on the CPU."""
    if torch.cuda.is_available():
        return median_ms(fn)
    fn()  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- the chains


def producer(kind: str, option: str, x, mod):
    """The chain's producer in `option`'s form: bf16 tensor or QuantizedActivation."""
    from vdrt import ops
    from vdrt.models import fp8

    if kind == "ffn_out":
        return fp8.gelu(x) if option == "fp8-producer" else F.gelu(x, approximate="tanh")
    if kind == "o":
        return x
    shift, scale = mod
    if option == "fp8-producer":
        return fp8.modulate(x, shift, scale, 1e-6)
    return ops.adaln_modulate(x, shift, scale, 1e-6)


def chain(kind: str, option: str, x, mod, weights):
    """Producer then the linears -> list of outputs."""
    from vdrt import ops

    a = producer(kind, option, x, mod)
    if option == "bf16":
        return [F.linear(a, w, b) for w, b in weights]
    with ops.use(linear="vdrt-fp8" if option == "fp8-producer" else "vdrt-fp8-separate"):
        return [ops.linear(a, w, b) for w, b in weights]


def reference(kind: str, x, mod, weights):
    """fp32 (float64 on the CPU) chain from the same inputs."""
    acc = torch.float32 if x.is_cuda else torch.float64
    if kind == "ffn_out":
        a = F.gelu(x.to(acc), approximate="tanh")
    elif kind == "o":
        a = x.to(acc)
    else:
        shift, scale = mod
        a = F.layer_norm(x.to(acc), (x.shape[-1],), eps=1e-6) * (1 + scale.to(acc)) + shift.to(acc)
    return [F.linear(a, w.to(acc), b.to(acc)) for w, b in weights]


def rel_err(outs, refs, weights) -> float:
    errs = [((o.to(r.dtype) - r).norm() / (r - b.to(r.dtype)).norm()).item() for o, r, (_, b) in zip(outs, refs, weights)]
    return max(errs)


def inputs(kind: str, d: int, f: int, m: int):
    """Activations with a few heavy channels, Wan-like fp32 modulation chunks, weights ~ N(0, 1/K)."""
    dev, bf = device(), torch.bfloat16
    k, n, count = {"qkv": (d, d, 3), "ffn_in": (d, f, 1), "ffn_out": (f, d, 1), "o": (d, d, 1)}[kind]
    x = torch.randn(1, m, k, device=dev)
    x[..., :4] *= 20
    mod = torch.randn(1, 6, k, device=dev).chunk(6, dim=1)[:2]
    weights = [((torch.randn(n, k, device=dev) / k**0.5).to(bf), (torch.randn(n, device=dev) * 0.1).to(bf))
               for _ in range(count)]
    return x.to(bf), (mod[0], mod[1] * 0.5), weights, 2.0 * m * k * n * count, (k, n, count)


def chain_rows(name: str, kind: str, d: int, f: int, m: int, base: dict) -> list[Result]:
    x, mod, weights, flops, (k, n, count) = inputs(kind, d, f, m)
    case = f"{name} {kind} M={m} K={k} N={n}" + (f" x{count}" if count > 1 else "")
    refs = reference(kind, x, mod, weights)
    prod_ms = timer(lambda: producer(kind, "bf16", x, mod)) if kind != "o" else 0.0
    rows, first = [], {}
    for option in OPTIONS if kind != "o" else OPTIONS[:2]:
        try:
            with torch.inference_mode():
                err = rel_err(chain(kind, option, x, mod, weights), refs, weights)
                ms = timer(lambda: chain(kind, option, x, mod, weights))
        except Exception as e:  # one failing option must not lose the other rows
            log.exception("%s %s failed", case, option)
            rows.append(Result("fp8_producers", case, option, None, **base, error=f"{type(e).__name__}: {e}"[:300]))
            continue
        lin = ms - prod_ms
        first.setdefault("chain", ms)
        first.setdefault("linear", lin)
        rows.append(Result("fp8_producers", case, option, ms, **base, tflops=flops / ms / 1e9, linear_ms=lin,
                           speedup_chain=first["chain"] / ms, speedup_linear=first["linear"] / lin if lin > 0 else None,
                           target=TARGET if option != "bf16" else None, rel_err=err, ok=err < BOUND[option]))
    return rows


def gemm_rows(name: str, d: int, f: int, m: int, base: dict) -> list[Result]:
    """The GEMM alone at each distinct (K, N): bf16 F.linear vs fp8_linear_prequant on ready codes."""
    from vdrt.kernels.quant import quantize_linear_weight, quantize_rows

    rows = []
    for k, n in sorted({(d, d), (d, f), (f, d)}):
        x = torch.randn(m, k, device=device()).to(torch.bfloat16)
        w, b = (torch.randn(n, k, device=device()) / k**0.5).to(torch.bfloat16), torch.zeros(n, device=device(),
                                                                                            dtype=torch.bfloat16)
        xq, xs = quantize_rows(x, "fp8") if x.is_cuda else _ref_quant(x)
        wq, ws = quantize_linear_weight(w, "fp8")
        with torch.inference_mode():
            t_bf = timer(lambda: F.linear(x, w, b))
            t_fp8 = timer(lambda: torch.ops.vdrt.fp8_linear_prequant(xq, xs, wq, ws.reshape(-1), b, torch.bfloat16))
        flops = 2.0 * m * k * n
        case = f"{name} gemm M={m} K={k} N={n}"
        rows.append(Result("fp8_producers", case, "bf16 gemm", t_bf, **base, tflops=flops / t_bf / 1e9))
        rows.append(Result("fp8_producers", case, "fp8 gemm", t_fp8, **base, tflops=flops / t_fp8 / 1e9,
                           speedup_chain=t_bf / t_fp8))
    return rows


def _ref_quant(x):
    from vdrt.kernels.quant import reference_quantize

    return reference_quantize(x, "fp8")


def bytes_saved_per_block(m: int, d: int, f: int, elem: int = 2) -> dict[str, int]:
    """HBM bytes one Wan block no longer moves with producer-fed fp8 (computed from the data flow, not measured).

    qkv:     adaLN writes codes (m*d + 4m) instead of bf16 (m*d*elem); three quantize passes (each reads
             m*d*elem, writes m*d + 4m) are gone.
    ffn_in:  the same with one quantize pass.
    ffn_out: GELU's bf16 write and the quantizer's bf16 read (2 * m*f*elem) are gone.
    The GEMMs read the same codes either way."""
    adaln = m * d * elem - (m * d + 4 * m)
    quant = m * d * elem + m * d + 4 * m
    out = {"qkv": adaln + 3 * quant, "ffn_in": adaln + quant, "ffn_out": 2 * m * f * elem}
    out["block"] = sum(out.values())
    return out


# ---------------------------------------------------------------- one denoiser step


def step_rows(preset: str, base: dict) -> list[Result]:
    from vdrt import models, ops

    cfg = models.config_from_name(preset)
    tiny = preset.endswith("tiny")
    lat = (2, 8, 8) if tiny else (21, 60, 104)  # 480p x 81f latents -> 32760 tokens at 1x2x2 patches
    text = 8 if tiny else 512
    torch.manual_seed(0)
    with torch.device(device()):
        model = models.build_model(cfg)
    model = model.to_dtype(torch.bfloat16).eval().requires_grad_(False)
    x = torch.randn(1, cfg.in_channels, *lat, device=device(), dtype=torch.bfloat16)
    t = torch.tensor([700.0], device=device())
    ctx = torch.randn(1, text, cfg.text_dim, device=device(), dtype=torch.bfloat16)
    tokens = lat[0] * (lat[1] // cfg.patch_size[1]) * (lat[2] // cfg.patch_size[2])
    case = f"{preset} step B1 {'x'.join(map(str, lat))} latents ({tokens} tok) text{text}"
    rows, ref, bf_ms = [], None, None
    for option, choice in (("bf16", "auto"), ("fp8-separate", "vdrt-fp8-separate"), ("fp8-producer", "vdrt-fp8")):
        try:
            with torch.inference_mode(), ops.use(linear=choice):
                out = model(x, t, ctx).float()
                ms = timer(lambda: model(x, t, ctx))
        except Exception as e:
            log.exception("%s %s failed", case, option)
            rows.append(Result("fp8_producers", case, option, None, **base, error=f"{type(e).__name__}: {e}"[:300]))
            continue
        ref = out if ref is None else ref
        bf_ms = ms if bf_ms is None else bf_ms
        err = ((out - ref).norm() / ref.norm()).item()
        rows.append(Result("fp8_producers", case, option, ms, **base, speedup_chain=bf_ms / ms, rel_err=err,
                           ok=bool(torch.isfinite(out).all()) and err < 0.1))
    del model
    return rows


def card_rows(card_path: str, base: dict) -> list[Result]:
    """One denoiser call of a trained embedded model (a card) in fp32 and in bf16, with each option:
    rel_err against the fp32 model with torch ops (2 clips, t = 500 and 900, t2v)."""
    from vdrt import ops
    from vdrt.export.tiny.quality.cards import load_card_models, read_card
    from vdrt.export.tiny.quality.generate import build_cond, call_denoiser

    den, text = load_card_models(read_card(card_path))
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 17, 64, 64), torch.tensor([500.0, 900.0])
    ctx = text(["a red circle bouncing", "a blue square falling"])
    cond = build_cond(den.config.cond_channels, "t2v", None, None, 2, (17, 64, 64))
    rows, ref, sep = [], None, None
    for dtype in (torch.float32, torch.bfloat16):
        den = den.to(dtype).eval()
        for option, choice in (("bf16" if dtype == torch.bfloat16 else "fp32", "torch"),
                               ("fp8-separate", "vdrt-fp8-separate"), ("fp8-producer", "vdrt-fp8")):
            with torch.no_grad(), ops.use(**{**dict.fromkeys(ops.OPS, "torch"), "linear": choice}):
                out = call_denoiser(den, x.to(dtype), t, ctx.to(dtype), cond.to(dtype)).float()
            ref = out if ref is None else ref
            sep = out if option == "fp8-separate" else sep
            rows.append(Result("fp8_producers", f"{Path(card_path).stem} forward {str(dtype)[6:]} t2v 2x17x64x64",
                               option, None, **base, rel_err=_rel(out, ref), ok=bool(torch.isfinite(out).all()),
                               rel_diff_vs_separate=_rel(out, sep) if option == "fp8-producer" else None))
    return rows


def _rel(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    from vdrt import ops

    ops.set_choice("linear", "auto")  # loads vdrt.kernels (registers vdrt-fp8 / vdrt-fp8-separate)
    base = meta()
    rows: list[Result] = []
    for name in [] if args.no_chains else args.models.split(","):
        d, f = SHAPES[name]
        for kind in ("qkv", "ffn_in", "ffn_out", "o"):
            rows += chain_rows(name, kind, d, f, args.tokens, base)
        rows += gemm_rows(name, d, f, args.tokens, base)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for preset in args.step:
        rows += step_rows(preset, base)
    if args.card:
        rows += card_rows(args.card, base)
    write_rows(rows, args.out)
    bad = [r for r in rows if r.error or r.ok is False]
    for r in bad:
        log.error("NOT OK: %s %s rel_err=%s error=%s", r.case, r.impl, r.rel_err, r.error)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
