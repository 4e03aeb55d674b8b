"""Compiled engines on the GPU: AOTI build/load/step beside the torch engine, diffusers eager and torch.compile.

    python benchmarks/engines.py --out benchmarks/results/h100/engines.json

Part 1, Wan2.1-T2V-1.3B (random weights, bf16), latents (1, 16, 21, 60, 104) = 32760 tokens,
512 text tokens: vdrt eager (torch engine), vdrt CUDA graphs, diffusers eager, diffusers
torch.compile (compile time apart), and the AOTI engine: export and compile time apart, load
time, step latency, then a second shape inside the profile (13 latent frames) without
rebuilding, and the AOTI engine with CUDA graphs. Part 2, wan-tiny and factorized-tiny at small
shapes: launch overhead saved by CUDA graphs (torch engine and AOTI engine, with and without).

Rows: bench, case, impl, ms (median, triton.testing.do_bench), device, commit, date, build_s,
load_s (+ export_s, compile_s, rel_err against vdrt eager). A failing row records its error
and the run goes on. Budget on an H100: ~8 minutes (AOTI compile ~100 s + export ~10 s,
diffusers torch.compile ~150 s); `--no-compile` skips torch.compile, `--no-tiny` part 2,
`--only-tiny` part 1. `--aoti-ops default,torch` builds a second AOTI engine with every vdrt op
forced to torch (Inductor fuses all of it); `--aoti-weights in_so` links the weights into the .so.

AOTI packages crash at load on the lent GPU image unless libstdc++ is preloaded; this script
re-executes itself with LD_PRELOAD set at start (vdrt.engines.aoti.ensure_preload, see
docs/engine-format.md) unless VDRT_AOTI_PRELOAD=0.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import Row, median_ms, meta, write_rows

log = logging.getLogger("engines")


@dataclass
class Result(Row):
    build_s: float | None = None
    load_s: float | None = None
    export_s: float | None = None
    compile_s: float | None = None
    rel_err: float | None = None
    verify_s: float | None = None
    error: str | None = None


class Bench:
    """Collects rows; `row()` never raises (a failure becomes a row with `error`)."""

    def __init__(self, name: str, rep_ms: int):
        self.name, self.rep_ms, self.meta, self.rows = name, rep_ms, meta(), []

    def row(self, case: str, impl: str, fn, ref=None, **extra) -> float | None:
        try:
            with torch.inference_mode():
                out = fn()
                err = rel_err(out, ref) if ref is not None else None
                ms = median_ms(fn, warmup_ms=100, rep_ms=self.rep_ms)
            self.rows.append(Result(self.name, case, impl, ms, **self.meta, rel_err=err, **extra))
        except Exception as e:  # one failing variant must not lose the others' numbers
            log.exception("%s / %s failed", case, impl)
            self.rows.append(Result(self.name, case, impl, None, **self.meta, error=f"{type(e).__name__}: {e}"[:300],
                                    **extra))
        print(json.dumps(self.rows[-1].__dict__), flush=True)
        return self.rows[-1].ms

    def fail(self, case: str, impl: str, e: Exception) -> None:
        log.exception("%s / %s failed", case, impl)
        self.rows.append(Result(self.name, case, impl, None, **self.meta, error=f"{type(e).__name__}: {e}"[:300]))


def rel_err(out, ref) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm()).item()


def wan_inputs(cfg, frames, height, width, text, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(1, cfg.in_channels, frames, height, width, device="cuda", generator=g).bfloat16()
    ctx = torch.randn(1, text, cfg.text_dim, device="cuda", generator=g).bfloat16()
    return x, torch.tensor([700.0], device="cuda"), ctx


def models(preset: str):
    """(our WanModel, diffusers model or None) with the same random weights, bf16 on the GPU."""
    from vdrt import models as vm

    cfg = vm.config_from_name(preset)
    try:
        from wan_step import diffusers_model, ours_from

        torch.manual_seed(0)
        with torch.device("cuda"):
            dm = diffusers_model(cfg)
        dm = dm.to(torch.bfloat16).eval().requires_grad_(False)
        return ours_from(dm, cfg), dm
    except ImportError as e:
        log.warning("diffusers unavailable (%s): no diffusers rows", e)
        torch.manual_seed(0)
        with torch.device("cuda"):
            ours = vm.build_model(cfg)
        return ours.to_dtype(torch.bfloat16).eval().requires_grad_(False), None


def run_wan(args, b: Bench) -> None:
    from vdrt.engines.torch import TorchEngine

    ours, dm = models(args.preset)
    cfg = ours.config
    x = wan_inputs(cfg, args.frames, args.height, args.width, args.text_len)
    case = f"{args.preset} 1x{args.frames}x{args.height}x{args.width} text{args.text_len} bf16"
    with torch.inference_mode():
        ref = ours(*x).float()
    b.row(case, "vdrt-torch-eager", lambda: ours(*x), ref)
    graphed = TorchEngine(ours, cuda_graphs=True)
    b.row(case, "vdrt-torch-cudagraph", lambda: graphed(*x), ref)
    if dm is not None:
        b.row(case, "diffusers-eager", lambda: dm(*x, return_dict=False)[0], ref)
    if dm is not None and not args.no_compile:
        compile_row(b, dm, case, x, ref)
        torch._dynamo.reset()  # free the compiled graph's memory before the AOTI builds
    eng = None
    for variant in args.aoti_ops.split(","):
        got = aoti_rows(args, b, ours, case, x, ref, variant)
        eng = eng or got
        gc.collect()
    if eng is not None:
        second_shape_row(args, b, ours, eng)


def aoti_rows(args, b: Bench, ours, case, x, ref, variant: str):
    """Build, load and time one AOTI engine. variant "default": our kernels as triton_ops inside the
    package; "torch": every vdrt op forced to its torch fallback, so Inductor fuses all of it."""
    import vdrt
    from vdrt.engines import manifest as mf
    from vdrt.engines.loading import load

    impl = "vdrt-aoti" if variant == "default" else f"vdrt-aoti-{variant}ops"
    out = Path(tempfile.mkdtemp(prefix="vdrt-bench-")) / f"wan-aoti-{variant}"
    shapes = {"batch": (1, 1, 2), "frames": (args.frames2, args.frames, args.frames), "height": args.height,
              "width": args.width, "text_len": args.text_len}
    ops = {op: "torch" for op in vdrt.ops.OPS} if variant == "torch" else {}
    try:
        with vdrt.ops.use(**ops):
            vdrt.export.build(ours, "aoti", out, precision="bf16", shapes=shapes, cache=False, load=False,
                              aoti_weights=args.aoti_weights)
    except Exception as e:
        b.fail(case, impl, e)
        return None
    secs = json.loads((out / "manifest.json").read_text())["build"]["seconds"]
    times = dict(build_s=secs["total"], export_s=secs["export"], compile_s=secs["compile"])
    t0 = time.perf_counter()
    mf.verify_artifacts(out, mf.read(out))  # timed alone: the hash share of the load time
    verify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        eng = vdrt.load_engine(out)
    except Exception as e:
        b.fail(case, impl, e)
        return None
    load_s = time.perf_counter() - t0
    b.row(case, impl, lambda: eng(*x), ref, load_s=load_s, verify_s=verify_s, **times)
    try:
        graphed = load(out, cuda_graphs=True)
        b.row(case, f"{impl}-cudagraph", lambda: graphed(*x), ref)
        del graphed
    except Exception as e:
        b.fail(case, f"{impl}-cudagraph", e)
    return eng


def second_shape_row(args, b: Bench, ours, eng) -> None:
    x2 = wan_inputs(ours.config, args.frames2, args.height, args.width, args.text_len, seed=1)
    case = f"{args.preset} 1x{args.frames2}x{args.height}x{args.width} text{args.text_len} bf16 (same engine)"
    with torch.inference_mode():
        ref2 = ours(*x2).float()
    b.row(case, "vdrt-torch-eager", lambda: ours(*x2), ref2)
    b.row(case, "vdrt-aoti (no rebuild)", lambda: eng(*x2), ref2)


def compile_row(b: Bench, dm, case, x, ref) -> None:
    compiled = torch.compile(dm)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled(*x, return_dict=False)
        torch.cuda.synchronize()
    except Exception as e:
        b.fail(case, "diffusers-torch.compile", e)
        return
    b.row(case, "diffusers-torch.compile", lambda: compiled(*x, return_dict=False)[0], ref,
          compile_s=time.perf_counter() - t0)


def run_tiny(b: Bench) -> None:
    """Launch overhead: the same small step with and without CUDA graphs (torch engine and AOTI)."""
    for name, shape in (("wan-tiny", (1, 16, 3, 16, 16)), ("factorized-tiny", (1, 3, 5, 32, 32))):
        try:
            tiny_rows(b, name, shape)
        except Exception as e:
            b.fail(f"{name} {shape}", "setup", e)
        gc.collect()


def tiny_rows(b: Bench, name: str, shape) -> None:
    import vdrt
    from vdrt.engines.loading import load
    from vdrt.engines.torch import TorchEngine

    den = vdrt.load_denoiser(name, dtype=torch.bfloat16, device="cuda")
    cfg = den.config
    x = (torch.randn(*shape, device="cuda", dtype=torch.bfloat16), torch.tensor([500.0], device="cuda"),
         torch.randn(1, 16, cfg.text_dim, device="cuda", dtype=torch.bfloat16))
    case = f"{name} {'x'.join(map(str, shape))} text16 bf16"
    with torch.inference_mode():
        ref = den(*x).float()
    b.row(case, "vdrt-torch-eager", lambda: den(*x), ref)
    torch_graphed = TorchEngine(den, cuda_graphs=True)
    b.row(case, "vdrt-torch-cudagraph", lambda: torch_graphed(*x), ref)
    out = Path(tempfile.mkdtemp(prefix="vdrt-bench-")) / name
    f, h, w = shape[2:]
    t0 = time.perf_counter()
    vdrt.export.build(den, "aoti", out, precision="bf16", cache=False, load=False,
                      shapes={"batch": (1, 1, 2), "frames": f, "height": h, "width": w, "text_len": (1, 16, 32)})
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    eng = vdrt.load_engine(out)
    load_s = time.perf_counter() - t0
    b.row(case, "vdrt-aoti", lambda: eng(*x), ref, build_s=build_s, load_s=load_s)
    graphed = load(out, cuda_graphs=True)
    b.row(case, "vdrt-aoti-cudagraph", lambda: graphed(*x), ref)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--frames", type=int, default=21, help="latent frames (the profile's opt and max)")
    ap.add_argument("--frames2", type=int, default=13, help="second shape's latent frames (the profile's min)")
    ap.add_argument("--height", type=int, default=60)
    ap.add_argument("--width", type=int, default=104)
    ap.add_argument("--text-len", type=int, default=512)
    ap.add_argument("--rep-ms", type=int, default=2000)
    ap.add_argument("--no-compile", action="store_true", help="skip diffusers torch.compile (~150 s)")
    ap.add_argument("--no-tiny", action="store_true", help="skip the launch-overhead rows on tiny models")
    ap.add_argument("--only-tiny", action="store_true", help="only the launch-overhead rows on tiny models")
    ap.add_argument("--aoti-ops", default="default",
                    help="comma list of AOTI variants: default (our kernels inside) and/or torch (all torch ops)")
    ap.add_argument("--aoti-weights", default="external", choices=["external", "in_so"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/engines.py needs a CUDA GPU")
    from vdrt.engines.aoti import ensure_preload

    ensure_preload(force=os.environ.get("VDRT_AOTI_PRELOAD", "") != "0")
    t0 = time.perf_counter()
    b = Bench("engines", args.rep_ms)
    if not args.only_tiny:
        run_wan(args, b)
    gc.collect()
    torch.cuda.empty_cache()
    if not args.no_tiny:
        run_tiny(b)
    write_rows(b.rows, args.out)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s")
    main()
