"""`vdrt bench MODEL_OR_ENGINE` timing: per-step latency of our denoiser beside its peers, in one process.

    vdrt bench wan2.1-t2v-1.3b --backend aoti --precision bf16 --frames 81 --height 480 --width 832 \
        --steps 4 --peers diffusers,compile --json rows.json

Rows (one per impl): warm-up / compile time of the first call apart (`first_ms`, `compile_s` for
builds), then per-step latency over `--repeats` synchronized calls (`ms` median, `p90_ms`), peak
GPU memory of the timed calls (`peak_mem_gb`), achieved TFLOP/s from the step's FLOPs (counted by
torch's FlopCounterMode on a meta-device copy of the model, so engines are counted too) against the
card's measured ceiling (DESIGN.md) where one is known, and with `--steps N` a row for the end-to-end
clip (text encoding, N steps, decoding) through `vdrt.Pipeline`. Peers share the weights and inputs
of ours and report their relative error against ours. Sizes are pixels, as for `vdrt generate`.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from vdrt.errors import ConfigError
from vdrt.pipeline.sources import PRECISIONS

log = logging.getLogger(__name__)

PEERS = ("diffusers", "compile")
BACKENDS = ("torch", "aoti", "onnx")
# Measured dense ceilings (TFLOP/s) per GPU name fragment and precision: DESIGN.md ("bf16 GEMM 706").
CEILINGS = {"H100": {"bf16": 706.0, "fp16": 706.0}}


@dataclass(frozen=True)
class Target:
    """What is being timed: a callable denoiser, its config, the eager module (None for engines)."""
    name: str
    fn: Callable
    config: object
    module: torch.nn.Module | None
    default_size: tuple[int, int, int]
    backend: str


# ---------------------------------------------------------------- entry


def timing_rows(args, build_engine: Callable | None = None) -> list[dict]:
    """The rows of one `vdrt bench` timing run; `build_engine(module, backend, precision, size, device)` makes
    the aoti/onnx engine a model is timed as (the CLI passes the exporter's; the runtime never imports it)."""
    from vdrt.bench.meta import device_of, run_meta

    device = device_of(args.device)
    precision = precision_name(args, device)
    peers = parse_peers(args.peers)
    if args.steps and args.weights_dir is not None:
        raise ConfigError("--steps times the pipeline, which finds cards through VDRT_WEIGHTS_DIR: set "
                          "VDRT_WEIGHTS_DIR=DIR instead of --weights-dir DIR")
    target = load_target(args, device, PRECISIONS[precision])
    f, h, w = (args.frames or target.default_size[0], args.height or target.default_size[1],
               args.width or target.default_size[2])
    batch = args.batch or 1
    target = with_backend(target, args.backend, precision, (batch, f, h, w), device, build_engine)
    x = step_inputs(target.config, batch, f, h, w, device, PRECISIONS[precision])
    flops = count_flops(target.config, x)
    case = f"{batch}x{f}x{h}x{w} {precision}"
    common = {"bench": "step", "model": target.name, "case": case, **run_meta(device)}
    ours, ref = measure(lambda: target.fn(*x[:3], **x[3]), args.repeats, device)
    rows = [{**common, "impl": f"vdrt-{target.backend}", **ours, **rates(flops, ours["ms"], device, precision)}]
    for peer in peers:
        rows.append({**common, **peer_row(peer, target, x, ref, args.repeats, device, flops, precision)})
    if args.steps:
        rows.append({**common, **e2e_row(args, target, (f, h, w), device, PRECISIONS[precision])})
    return rows


def precision_name(args, device: torch.device) -> str:
    from vdrt.pipeline.sources import precision_name as name

    return name(args.precision or args.dtype, "--precision" if args.precision else "--dtype", device)


def parse_peers(text: str | None) -> list[str]:
    peers = [p.strip() for p in (text or "").split(",") if p.strip()]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        raise ConfigError(f"--peers {','.join(bad)}: unknown peer; choose from {','.join(PEERS)}")
    return peers


# ---------------------------------------------------------------- targets


def load_target(args, device: torch.device, dtype: torch.dtype) -> Target:
    """A model card, an engine directory, a checkpoint or a preset, as a callable denoiser."""
    from vdrt.bench.meta import DEFAULT_MODEL, find_card
    from vdrt.pipeline.sources import describe, load_denoiser_for

    name = args.model or (DEFAULT_MODEL if find_card(DEFAULT_MODEL, args.weights_dir) else "factorized-tiny")
    card = None if (args.weights_dir is None and Path(name).exists()) else find_card(name, args.weights_dir)
    if card is not None:
        from vdrt.embedded import Card

        c = Card.read(card)
        den = c.denoiser().to(device=device, dtype=dtype).eval()
        d = c.defaults
        return Target(name, den, den.config, den, (d["num_frames"], d["height"], d["width"]), "torch")
    info = describe(name)
    size = (info.defaults.num_frames, info.defaults.height, info.defaults.width)
    if info.kind == "engine":
        from vdrt.engines import load_engine

        engine = load_engine(name, device=device)
        return Target(Path(name).name, engine, info.config, None, size, engine.manifest["backend"])
    den = load_denoiser_for(name, dtype=dtype, device=device)
    return Target(Path(name).name, den, den.config, den, size, "torch")


def with_backend(target: Target, backend: str | None, precision: str, size: tuple, device, build_engine=None) -> Target:
    """`target` as asked: an engine dir keeps its backend; a model is built into an aoti/onnx engine
    fixed at the benchmark's size by `build_engine` (through the build cache; build time logged and kept)."""
    backend = backend or target.backend
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if target.module is None:
        if backend != target.backend:
            raise ConfigError(f"{target.name} is an engine directory built for {target.backend}; --backend {backend} "
                              "needs a model (a preset, card or checkpoint) to build from")
        return target
    if backend == "torch":
        return target
    if build_engine is None:
        raise ConfigError(f"--backend {backend} needs the engine builder (vdrt.export); run it through `vdrt bench`")
    t0 = time.perf_counter()
    engine = build_engine(target.module, backend, precision, size, device)
    log.info("bench: %s engine ready in %.1f s", backend, time.perf_counter() - t0)
    return Target(target.name, engine, target.config, target.module, target.default_size, backend)


def step_inputs(cfg, batch: int, frames: int, height: int, width: int, device, dtype) -> tuple:
    """Random (latents, timestep, context, extra) for one call; pixel models (3 channels) take pixels,
    others Wan-VAE latents (frames (F-1)/4+1, 8x smaller)."""
    if cfg.in_channels == 3:
        f, h, w = frames, height, width
    else:
        f, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    x = rand(batch, cfg.in_channels, f, h, w)
    extra = {}
    if cfg.cond_channels:
        extra["cond"] = rand(batch, cfg.cond_channels, f, h, w)
    if getattr(cfg, "image_dim", None):
        extra["image_embeds"] = rand(batch, 257, cfg.image_dim)
    t = torch.full((batch,), 500.0, device=device)
    return x, t, rand(batch, cfg.text_len, cfg.text_dim), extra


# ---------------------------------------------------------------- measuring


def measure(fn: Callable, repeats: int, device: torch.device) -> tuple[dict, torch.Tensor]:
    """First call apart (warm-up / JIT), then `repeats` synchronized calls: median, p90, peak memory."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        first = 1000 * (time.perf_counter() - t0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(1000 * (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return {"ms": statistics.median(times), "p90_ms": _quantile(times, 0.9), "first_ms": first,
            "repeats": len(times), "peak_mem_gb": peak}, out


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def count_flops(cfg, x: tuple) -> float:
    """FLOPs of one denoiser call, counted on a meta-device copy of the model (no memory, no weights)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vdrt import models, ops

    with torch.device("meta"):
        model = models.build_model(cfg).eval()
    meta = [t.to("meta") for t in x[:3]]
    extra = {k: v.to("meta") for k, v in x[3].items()}
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), ops.use(**{op: "torch" for op in ops.OPS}), counter:
        model(*meta, **extra)
    return float(counter.get_total_flops())


def rates(flops: float, ms: float, device: torch.device, precision: str) -> dict:
    tflops = flops / (ms * 1e9)
    ceiling = ceiling_for(device, precision)
    return {"tflop_per_step": flops / 1e12, "tflops": tflops, "ceiling_tflops": ceiling,
            "pct_of_ceiling": None if ceiling is None else 100 * tflops / ceiling}


def ceiling_for(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((c.get(precision) for key, c in CEILINGS.items() if key in name), None)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


# ---------------------------------------------------------------- peers and end to end


def peer_row(peer: str, target: Target, x: tuple, ref: torch.Tensor, repeats: int, device, flops: float,
             precision: str) -> dict:
    if target.module is None:
        raise ConfigError(f"--peers {peer} needs the model itself; {target.name} is an engine directory")
    if peer == "compile":
        compiled = torch.compile(target.module)
        res, out = measure(lambda: compiled(*x[:3], **x[3]), repeats, device)
        res["compile_s"] = res["first_ms"] / 1000
        impl = "torch.compile(vdrt)"
    else:
        from vdrt.bench.peers import diffusers_peer

        dm, call = diffusers_peer(target.module)
        res, out = measure(lambda: call(x), repeats, device)
        impl = f"diffusers-eager ({type(dm).__name__})"
    return {"impl": impl, **res, "rel_err_vs_ours": rel_err(out, ref), **rates(flops, res["ms"], device, precision)}


def e2e_row(args, target: Target, size: tuple, device, dtype) -> dict:
    """One clip through vdrt.Pipeline (text encoding, `--steps` sampler steps, decoding), warm-up apart."""
    from vdrt.pipeline import Pipeline

    source = args.model if target.module is None else target.name
    pipe = Pipeline.from_pretrained(source, dtype=dtype, device=device)
    if target.module is not None and target.backend != "torch":
        pipe.engine = target.fn  # the engine just built, not a second copy of the model
    f, h, w = size

    def clip():
        return pipe("a red circle bouncing", num_frames=f, height=h, width=w, num_steps=args.steps, guidance=1.0,
                    progress=False)
    res, _ = measure(clip, max(1, args.repeats // 3), device)
    return {"impl": f"vdrt-{target.backend} end-to-end clip, {args.steps} steps", **res,
            "ms_per_step": res["ms"] / args.steps}
