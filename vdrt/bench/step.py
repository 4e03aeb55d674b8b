"""`vdrt bench` step rows: one denoiser call per backend x attention choice, beside its peers, at one shape.

    vdrt bench wan2.1-t2v-1.3b --backend torch,aoti --attention sdpa,vdrt-int8 --frames 81 --height 480 \
        --width 832 --peers diffusers,compile --warmup 2 --iterations 20 --percentiles 50,90,99 --json rows.json

Each row: the first call apart (`first_ms`: compilation, autotuning, graph capture; `compile_s` for
engine builds), then the timed calls (`ms` median and the asked percentiles, `vdrt.bench.timing`),
peak GPU memory, achieved TFLOP/s from the step's FLOPs (counted by torch's FlopCounterMode on a
meta-device copy of the model, so engines are counted too) against the device's ceiling
(`vdrt.bench.ceilings`: measured for known GPUs, probed otherwise), and the relative error against
the first row of the shape. An aoti/onnx engine is built per shape (and per attention choice, which
is compiled in) through the build cache; with `--cuda-graphs` every call replays a CUDA graph.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """What is being timed: a callable denoiser, its config, the eager module (None for engines)."""
    name: str
    fn: Callable
    config: object
    module: torch.nn.Module | None
    defaults: object  # vdrt.request.Defaults: its size, steps, sampler, guidance
    backend: str
    build_s: float | None = None

    @property
    def default_size(self) -> tuple[int, int, int]:
        return self.defaults.num_frames, self.defaults.height, self.defaults.width


# ---------------------------------------------------------------- targets


def load_target(model: str | None, weights_dir, device: torch.device, dtype: torch.dtype) -> Target:
    """A model card, an engine directory, a checkpoint or a preset, as a callable denoiser."""
    from vdrt.bench.meta import DEFAULT_MODEL, find_card
    from vdrt.pipeline.sources import describe, load_denoiser_for

    name = model or (DEFAULT_MODEL if find_card(DEFAULT_MODEL, weights_dir) else "factorized-tiny")
    card = None if (weights_dir is None and Path(name).exists()) else find_card(name, weights_dir)
    if card is not None:
        from vdrt.embedded import Card

        from vdrt.request import Defaults

        c = Card.read(card)
        den = c.denoiser().to(device=device, dtype=dtype).eval()
        return Target(name, den, den.config, den, Defaults.from_card(c.defaults), "torch")
    info = describe(name)
    if info.kind == "engine":
        from vdrt.engines import load_engine

        engine = load_engine(name, device=device)
        return Target(Path(name).name, engine, info.config, None, info.defaults, engine.manifest["backend"])
    den = load_denoiser_for(name, dtype=dtype, device=device)
    return Target(Path(name).name, den, den.config, den, info.defaults, "torch")


def with_backend(target: Target, backend: str, precision: str, size: tuple, device, attention: str = "auto",
                 build_engine: Callable | None = None) -> Target:
    """`target` as asked: an engine dir keeps its backend; a model is built into an aoti/onnx engine fixed at
    the benchmark's size (and attention choice) by `build_engine` (through the build cache; build time kept)."""
    if target.module is None or backend == "torch":
        return target
    if build_engine is None:
        raise ConfigError(f"--backend {backend} needs the engine builder (vdrt.export); run it through `vdrt bench`")
    from vdrt import ops

    t0 = time.perf_counter()
    with ops.use(**_choice(attention)):
        engine = build_engine(target.module, backend, precision, size, device)
    build_s = time.perf_counter() - t0
    log.info("bench: %s engine (%s attention) ready in %.1f s", backend, attention, build_s)
    return replace(target, fn=engine, backend=backend, build_s=build_s)


def _choice(attention: str) -> dict:
    return {} if attention == "auto" else {"attention": attention}


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


# ---------------------------------------------------------------- rows


def step_call(target: Target, x: tuple, attention: str, cuda_graphs: bool) -> Callable:
    """fn() -> one denoiser call on x under the attention choice (through a CUDA graph if asked)."""
    from vdrt import ops

    names = sorted(x[3])
    args = [*x[:3], *(x[3][k] for k in names)]
    run = lambda xs: target.fn(*xs[:3], **dict(zip(names, xs[3:])))  # noqa: E731
    if cuda_graphs:
        from vdrt.engines.graphs import GraphCache

        graphs = GraphCache(run)
        run = graphs

    def call():
        with ops.use(**_choice(attention)):
            return run(args)
    return call


def step_row(target: Target, x: tuple, attention: str, plan, flops: float, ceiling: dict) -> tuple[dict, object]:
    from vdrt.bench.ceilings import rates
    from vdrt.bench.timing import measure

    res, out = measure(step_call(target, x, attention, plan.cuda_graphs), plan.timing, plan.device)
    impl = f"vdrt-{target.backend}" + (f" {attention}" if attention != "auto" else "") + \
        (" +graphs" if plan.cuda_graphs else "")
    row = {"impl": impl, "kind": "step", "backend": target.backend, "attention": attention, **res,
           **rates(flops, res["ms"], ceiling)}
    if target.build_s is not None:
        row["compile_s"] = target.build_s
    return row, out


def peer_row(peer: str, target: Target, x: tuple, plan, flops: float, ceiling: dict) -> tuple[dict, object]:
    from vdrt.bench.ceilings import rates
    from vdrt.bench.timing import measure

    if target.module is None:
        raise ConfigError(f"--peers {peer} needs the model itself; {target.name} is an engine directory")
    if peer == "compile":
        compiled = torch.compile(target.module)
        res, out = measure(lambda: compiled(*x[:3], **x[3]), plan.timing, plan.device)
        res["compile_s"] = (res["first_ms"] or 0) / 1000
        impl = "torch.compile(vdrt)"
    else:
        from vdrt.bench.peers import diffusers_peer

        dm, call = diffusers_peer(target.module)
        res, out = measure(lambda: call(x), plan.timing, plan.device)
        impl = f"diffusers-eager ({type(dm).__name__})"
    return {"impl": impl, "kind": "peer", "backend": "peer", "attention": "auto", **res,
            **rates(flops, res["ms"], ceiling)}, out


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


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()
