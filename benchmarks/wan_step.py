"""One Wan2.1 denoiser step at 480p x 81 frames: vdrt's torch engine beside diffusers, same run, same GPU.

    python benchmarks/wan_step.py --preset wan2.1-t2v-1.3b --out benchmarks/results/h100/wan_step.json

Latents (1, 16, 21, 60, 104) = 32760 tokens after 1x2x2 patches, 512 text tokens, bf16, random
weights (the same weights in both: diffusers' are converted into ours). Rows: vdrt eager with the
torch ops, vdrt eager with the registry's automatic choice (our kernels where registered), vdrt
with CUDA graphs, diffusers eager, and optionally torch.compile of each (compile time apart).
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
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    run(args)


def run(args):
    from vdrt import models, ops
    from vdrt.bench_peers import keep_fp32_modules
    from vdrt.engines.torch import TorchEngine

    cfg = models.config_from_name(args.preset)
    torch.manual_seed(0)
    with torch.device("cuda"):
        dm = diffusers_model(cfg)
    ours = ours_from(dm, cfg)
    dm = keep_fp32_modules(dm.to(torch.bfloat16)).eval().requires_grad_(False)
    x = torch.randn(1, cfg.in_channels, args.frames, args.height, args.width, device="cuda", dtype=torch.bfloat16)
    t = torch.tensor([700.0], device="cuda")
    ctx = torch.randn(1, 512, cfg.text_dim, device="cuda", dtype=torch.bfloat16)
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    flops = step_flops(cfg, tokens, 512)
    case = f"{args.preset} B1 {args.frames}x{args.height}x{args.width} ({tokens} tok) text512 bf16"
    m = meta()
    rows = []

    with torch.inference_mode():
        ref = dm(x, t, ctx, return_dict=False)[0].float()

    def row(impl, fn, compile_s=None):
        try:
            with torch.inference_mode():
                out = fn().float()
                err = ((out - ref).norm() / ref.norm()).item()
                ms = median_ms(fn, warmup_ms=200, rep_ms=2000)
            rows.append(Result("wan_step", case, impl, ms, **m, tflops=flops / ms / 1e9, compile_s=compile_s,
                               rel_err_vs_diffusers=err))
        except Exception as e:  # one failing variant must not lose the others' numbers
            log.exception("%s failed", impl)
            rows.append(Result("wan_step", case, impl, None, **m, error=f"{type(e).__name__}: {e}"[:300]))
        print(rows[-1], flush=True)

    row("diffusers-eager", lambda: dm(x, t, ctx, return_dict=False)[0])
    with ops.use(**{op: "torch" for op in ops.OPS}):
        row("vdrt-torch-eager (torch ops)", lambda: ours(x, t, ctx))
    row("vdrt-torch-eager (auto ops: our kernels)", lambda: ours(x, t, ctx))
    eng = TorchEngine(ours, cuda_graphs=True)
    row("vdrt-torch-cudagraph (auto ops)", lambda: eng(x, t, ctx))
    with ops.use(linear="vdrt-fp8"):
        row("vdrt eager, kernels + fp8 linears", lambda: ours(x, t, ctx))
        with ops.use(attention="vdrt-int8"):
            row("vdrt eager, kernels + fp8 linears + int8 attention", lambda: ours(x, t, ctx))
    dm.to(torch.bfloat16)  # everything cast, as a plain .to(bf16) does (less precise, fp32 rope gone)
    row("diffusers-eager (.to(bf16) casts all)", lambda: dm(x, t, ctx, return_dict=False)[0])
    if args.compile:
        for impl, mod in (("diffusers-torch.compile", dm), ("vdrt-torch.compile (auto ops)", ours)):
            compiled = torch.compile(mod)
            t0 = time.perf_counter()
            with torch.inference_mode():
                (compiled(x, t, ctx, return_dict=False)[0] if mod is dm else compiled(x, t, ctx))
            torch.cuda.synchronize()
            cs = time.perf_counter() - t0
            fn = (lambda c=compiled: c(x, t, ctx, return_dict=False)[0]) if mod is dm else \
                (lambda c=compiled: c(x, t, ctx))
            row(impl, fn, compile_s=cs)
            del compiled
            gc.collect()
    write_rows(rows, args.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
