"""One Wan2.1 denoiser step at 480p x 81 frames: vdrt's torch engine beside diffusers, same run, same GPU.

    python benchmarks/wan_step.py --preset wan2.1-t2v-1.3b --out benchmarks/results/h100/wan_step.json

Latents (1, 16, 21, 60, 104) = 32760 tokens after 1x2x2 patches, 512 text tokens, bf16, random
weights (the same weights in both: diffusers' are converted into ours). Rows: vdrt eager with the
torch ops, vdrt eager with the registry's automatic choice (our kernels where registered), vdrt
with CUDA graphs, the lossy options (fp8 linears, 8-bit attention, sparse 3D attention at 25%
density, alone and together), diffusers eager, and optionally torch.compile of each and diffusers'
regional compile (`compile_repeated_blocks`), compile time apart.

    python benchmarks/wan_step.py --preset wan2.1-t2v-14b --height 90 --width 160 --no-diffusers --lossy-only
"""
from __future__ import annotations

import argparse
import gc
import logging
import time
from dataclasses import dataclass

import torch

from common import Row, median_ms, meta, write_rows

log = logging.getLogger("wan_step")


@dataclass
class Result(Row):
    tflops: float | None = None
    compile_s: float | None = None
    rel_err_vs_diffusers: float | None = None
    error: str | None = None


def step_flops(cfg, tokens: int, text: int) -> float:
    """Matmul FLOPs of one step: projections, attention (self + cross) and FFN of every block."""
    d, f, L = cfg.dim, cfg.ffn_dim, cfg.num_layers
    proj = 2 * tokens * d * d * 4 + 2 * tokens * d * d * 2 + 2 * text * d * d * 2  # self qkvo, cross q,o, cross kv
    attn = 4 * tokens * tokens * d + 4 * tokens * text * d
    ffn = 2 * tokens * d * f * 2
    return L * (proj + attn + ffn)


def diffusers_model(cfg):
    from diffusers import WanTransformer3DModel

    from vdrt.models.wan_convert import config_to_diffusers

    return WanTransformer3DModel(**config_to_diffusers(cfg))


def ours_from(dm, cfg):
    from vdrt import models
    from vdrt.models.wan_convert import state_dict_from_diffusers

    with torch.device("cuda"):
        m = models.build_model(cfg)
    m.load_state_dict(state_dict_from_diffusers(dm.state_dict()))
    return m.to(torch.bfloat16).eval().requires_grad_(False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=60)
    ap.add_argument("--width", type=int, default=104)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of both models")
    ap.add_argument("--no-diffusers", action="store_true", help="ours only (no peer, no rel err column)")
    ap.add_argument("--lossy-only", action="store_true", help="only the default and the lossy rows")
    ap.add_argument("--only", default=None, help="comma-separated substrings: keep only the lossy rows they name")
    ap.add_argument("--reps-ms", type=int, default=2000, help="timing window per row (median of the calls in it)")
    ap.add_argument("--calls", type=int, default=0, help="instead: the median of this many timed calls after one "
                    "warm-up (for steps of seconds, where do_bench's estimate calls cost minutes)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    run(args)


def _models(cfg, with_diffusers: bool):
    """(ours, diffusers or None) with the same random weights, bf16, on the GPU."""
    from vdrt import models
    from vdrt.bench.peers import keep_fp32_modules

    torch.manual_seed(0)
    if not with_diffusers:
        with torch.device("cuda"):
            ours = models.build_model(cfg)
        return ours.to_dtype(torch.bfloat16).eval().requires_grad_(False), None
    with torch.device("cuda"):
        dm = diffusers_model(cfg)
    ours = ours_from(dm, cfg)
    return ours, keep_fp32_modules(dm.to(torch.bfloat16)).eval().requires_grad_(False)


LOSSY = [  # (row name, ops.use choices); 8-bit rows quantise q/k in the rope kernel unless marked unfused
    ("vdrt, 8-bit attention", dict(attention="vdrt-int8")),
    ("vdrt, 8-bit attention, q/k quantised after rope (unfused)", dict(attention="vdrt-int8", rope_attention="torch")),
    ("vdrt, 8-bit attention + fp8 linears", dict(linear="vdrt-fp8", attention="vdrt-int8")),
    ("vdrt, sparse attention 25% (bf16)", dict(attention="vdrt-sparse")),
    ("vdrt, sparse 8-bit attention 25%", dict(attention="vdrt-sparse-int8")),
    ("vdrt, sparse 8-bit attention 25%, unfused", dict(attention="vdrt-sparse-int8", rope_attention="torch")),
    ("vdrt, sparse 8-bit attention 25% + fp8 linears", dict(linear="vdrt-fp8", attention="vdrt-sparse-int8")),
]


def lossy_rows(row, ours, x, t, ctx, only=None):
    """vdrt's lossy options: fp8 linears, 8-bit attention, sparse 3D attention (25%), and together."""
    from vdrt import ops
    from vdrt.sparse import SparseConfig

    for name, choices in LOSSY:
        if only and not any(o in name for o in only):
            continue
        with ops.use(sparse=SparseConfig(density=0.25), **choices):
            row(name, lambda: ours(x, t, ctx))


def run(args):
    from vdrt import models, ops
    from vdrt.engines.torch import TorchEngine

    cfg = models.config_from_name(args.preset)
    ours, dm = _models(cfg, not args.no_diffusers)
    x = torch.randn(1, cfg.in_channels, args.frames, args.height, args.width, device="cuda", dtype=torch.bfloat16)
    t = torch.tensor([700.0], device="cuda")
    ctx = torch.randn(1, 512, cfg.text_dim, device="cuda", dtype=torch.bfloat16)
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    flops = step_flops(cfg, tokens, 512)
    case = f"{args.preset} B1 {args.frames}x{args.height}x{args.width} ({tokens} tok) text512 bf16"
    m = meta()
    rows = []
    ref = None
    if dm is not None:
        with torch.inference_mode():
            ref = dm(x, t, ctx, return_dict=False)[0].float()

    def row(impl, fn, compile_s=None):
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                out = fn().float()
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                err = ((out - ref).norm() / ref.norm()).item() if ref is not None else None
                del out
                ms = _timed(fn, args.calls) if args.calls else median_ms(fn, warmup_ms=200, rep_ms=args.reps_ms)
            rows.append(Result("wan_step", case, impl, ms, **m, tflops=flops / ms / 1e9,
                               compile_s=compile_s if compile_s is not None else first, rel_err_vs_diffusers=err))
        except Exception as e:  # one failing variant must not lose the others' numbers
            log.exception("%s failed", impl)
            rows.append(Result("wan_step", case, impl, None, **m, error=f"{type(e).__name__}: {e}"[:300]))
        print(rows[-1], flush=True)
        write_rows(rows, args.out)  # after every row: a time limit loses nothing

    if dm is not None:
        row("diffusers-eager", lambda: dm(x, t, ctx, return_dict=False)[0])
    if not args.lossy_only:
        with ops.use(**{op: "torch" for op in ops.OPS}):
            row("vdrt-torch-eager (torch ops)", lambda: ours(x, t, ctx))
    row("vdrt-torch-eager (auto ops: our kernels)", lambda: ours(x, t, ctx))
    if not args.lossy_only:
        eng = TorchEngine(ours, cuda_graphs=True)
        row("vdrt-torch-cudagraph (auto ops)", lambda: eng(x, t, ctx))
        with ops.use(linear="vdrt-fp8"):
            row("vdrt eager, kernels + fp8 linears", lambda: ours(x, t, ctx))
    lossy_rows(row, ours, x, t, ctx, args.only.split(",") if args.only else None)
    if args.compile:
        compile_rows(row, ours, dm, x, t, ctx)
    write_rows(rows, args.out)


def _timed(fn, calls: int) -> float:
    """Median ms of `calls` calls timed with CUDA events (the first call, already made, warmed up)."""
    times = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def compile_rows(row, ours, dm, x, t, ctx):
    """torch.compile of both models and diffusers' regional compile (compile time = first call)."""
    variants = [("vdrt-torch.compile (auto ops)", lambda: torch.compile(ours), False)]
    if dm is not None:  # regional compile is the diffusers users' fast path (full-model compile: same kernels)
        variants += [("diffusers compile_repeated_blocks (regional)", lambda: _regional(dm), True)]
    for impl, make, is_dm in variants:
        compiled = make()
        fn = (lambda c=compiled: c(x, t, ctx, return_dict=False)[0]) if is_dm else (lambda c=compiled: c(x, t, ctx))
        row(impl, fn)
        del compiled
        gc.collect()


def _regional(dm):
    dm.compile_repeated_blocks(fullgraph=True)
    return dm


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
