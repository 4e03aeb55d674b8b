"""`vdrt build MODEL --backend aoti|onnx|tensorrt --precision ... --frames MIN:OPT:MAX ... --out DIR`.

Sizes on the command line are in pixels and are converted to latent units with the model's
factors (vdrt.export.shapes); bad strings and sizes the model cannot take fail before anything
is loaded or compiled, with a ConfigError naming the format or the multiple needed.
"""
from __future__ import annotations

import logging
import time

import torch

log = logging.getLogger(__name__)


def build_command(args) -> int:
    from vdrt.export import shapes as sh
    from vdrt.export.build import build, check_backend, check_out

    for flag in ("frames", "height", "width", "batch", "text_len"):
        if getattr(args, flag, None) is not None:
            sh.parse_triple(flag.replace("_", "-"), getattr(args, flag))  # format errors first, before any loading
    check_backend(args.backend, args.precision, {})
    check_out(args.out, getattr(args, "force", False))
    trust = bool(getattr(args, "trust_pickle", False))
    specs, recipe = _adapter_args(args, trust)  # LoRA files and scales, the recipe's fit: before any loading
    attention = _attention_args(args)  # the attention compiled in, checked before any loading
    _maybe_preload(args.backend)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    den = _load(args.model, device, specs, trust)
    shapes = sh.shapes_from_pixels(den.config, *_pixel_sizes(args, den.config), batch=args.batch,
                                   text_len=getattr(args, "text_len", None))
    t0 = time.perf_counter()
    with _attention_use(attention):
        out = build(den, args.backend, args.out, precision=args.precision, shapes=shapes,
                    cache=not getattr(args, "no_cache", False), load=False, force=getattr(args, "force", False),
                    **_source(args.model), **_adapters(den, recipe), **_attention_options(attention))
    _report(out, time.perf_counter() - t0)
    return 0


def _adapter_args(args, trust_pickle: bool):
    """(checked --lora specs, the recipe to record or None)."""
    from vdrt.pipeline.adapters import lora_specs
    from vdrt.pipeline.recipe import choose
    from vdrt.pipeline.sources import describe

    specs = lora_specs(getattr(args, "lora", None), trust_pickle)
    return specs, choose(getattr(args, "recipe", None), describe(args.model))


def _attention_args(args):
    """(choice, SparseConfig or None) from --attention/--sparse, or None; sparse needs one fixed size."""
    from vdrt import ops
    from vdrt.cli.options import parse_sparse
    from vdrt.errors import ConfigError

    name = ops.ALIASES.get(args.attention, args.attention) if getattr(args, "attention", None) else None
    sparse = parse_sparse(getattr(args, "sparse", None))
    if name is None:
        if sparse is not None:
            raise ConfigError("--sparse goes with --attention vdrt-sparse or vdrt-sparse-int8")
        return None
    if name not in ops.available("attention"):
        raise ConfigError(f"--attention {name}: unknown implementation; choose one of {ops.available('attention')}")
    if name in ops.SPARSE_IMPLS:
        ranged = [f for f in ("frames", "height", "width") if ":" in str(getattr(args, f, None) or "")]
        if ranged:
            raise ConfigError(f"a sparse-attention engine is built for one size (its tile plan is fixed by the grid): "
                              f"give --{', --'.join(ranged)} as one number")
    elif sparse is not None:
        raise ConfigError(f"--sparse goes with --attention vdrt-sparse or vdrt-sparse-int8, not {name}")
    return name, sparse


def _attention_use(attention):
    import contextlib

    from vdrt import ops

    if attention is None:
        return contextlib.nullcontext()
    name, sparse = attention
    return ops.use(attention=name, sparse=sparse)


def _attention_options(attention) -> dict:
    """What the manifest records (build.options): the attention compiled in and its sparse config."""
    import dataclasses

    if attention is None:
        return {}
    name, sparse = attention
    return {"attention": name, **({"sparse": dataclasses.asdict(sparse)} if sparse is not None else {})}


def _adapters(den, recipe) -> dict:
    """Build options the manifest records (build.options): the fused LoRAs (file, sha256, scale), the recipe."""
    from vdrt.models.lora import lora_manifest_entries

    entries = lora_manifest_entries(den)
    return {**({"loras": entries} if entries else {}), **({"recipe": recipe.name} if recipe is not None else {})}


def _source(model: str) -> dict:
    """An embedded model's name goes into the manifest, so `vdrt run` uses its text encoder and defaults."""
    from vdrt import embedded

    return {"source": model} if model in embedded.names() else {}


def _maybe_preload(backend: str) -> None:
    """With VDRT_AOTI_PRELOAD=1, restart with the libstdc++ preload before building (see aoti_preload)."""
    if backend != "aoti":
        return
    from vdrt.engines import aoti_preload

    if aoti_preload.mode() == "always":
        aoti_preload.ensure_preload(force=True)


def _load(model: str, device: torch.device, lora: list, trust_pickle: bool):
    from vdrt.pipeline.sources import load_denoiser_for

    log.info("loading %s on %s", model, device)
    return load_denoiser_for(model, dtype=torch.float32, device=device, trust_pickle=trust_pickle, lora=lora)


def _pixel_sizes(args, config) -> tuple[str, str, str]:
    from vdrt.pipeline.sources import describe

    d = describe(args.model).defaults
    sizes = (args.frames or str(d.num_frames), args.height or str(d.height), args.width or str(d.width))
    if not (args.frames and args.height and args.width):
        log.info("unset sizes default to the model's generation size: frames %s, height %s, width %s", *sizes)
    return sizes


def _report(out, seconds: float) -> None:
    from vdrt.engines import inspect_engine

    m = inspect_engine(out)
    prof = ", ".join(f"{k} {v['min']}:{v['opt']}:{v['max']}" for k, v in m["profiles"].items())
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in m["build"]["seconds"].items())
    print(f"wrote {out}: {m['backend']} engine, {m['precision']}, on {m['device']['name']}; latent profile {prof}")
    print(f"build phases: {phases}; this command took {seconds:.1f} s (cache reuse is instant)")

