"""`vdrt.export.build`: a denoiser module -> an engine directory (via the build cache) -> the loaded engine.

    engine = vdrt.export.build(den, backend="aoti", out="engines/x", precision="bf16",
                               shapes={"frames": (5, 9, 21), "height": (30, 60, 60), "width": (52, 104, 104)})

Steps, each timed and logged: cast to the precision (a copy; the caller's module is untouched),
trace at the profile's example sizes, export + compile with the backend, hash the artifacts and
write manifest.json, all in a temporary directory that is renamed into the cache entry and then
copied next to `out` and renamed onto it. `cache=False` builds straight into a temporary
directory next to `out`.
"""
from __future__ import annotations

import copy
import importlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from vdrt.export import cache as cache_mod
from vdrt.export import claim as claim_mod
from vdrt.export import manifest as manifest_mod
from vdrt.export import shapes as shapes_mod

import vdrt
from vdrt.engines.manifest import FORMAT_VERSION, PRECISIONS
from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = {"aoti": "vdrt.export.aoti", "onnx": "vdrt.export.onnx", "tensorrt": "vdrt.export.tensorrt"}


@dataclass
class Target:
    """What a backend builds: a module taking the engine inputs positionally, and their description."""

    wrapper: torch.nn.Module
    model_config: dict
    inputs: list
    outputs: list
    profile: shapes_mod.Profile
    auto_dims: bool | None = False  # None: explicit Dims, falling back to Dim.AUTO
    layout: str = "vdrt"
    options: dict = field(default_factory=dict)


class CallWrapper(torch.nn.Module):
    """`(latents, timestep, context[, cond][, image_embeds])` positionally -> the vdrt model's forward."""

    def __init__(self, module: torch.nn.Module, names: list[str]):
        super().__init__()
        self.module, self.cond_names = module, [n for n in names if n not in ("latents", "timestep", "context")]

    def forward(self, latents, timestep, context, cond=None, image_embeds=None):
        given = {"cond": cond, "image_embeds": image_embeds}
        return self.module(latents, timestep, context, **{k: given[k] for k in self.cond_names})


def build(module, backend: str, out, precision: str = "bf16", shapes: dict | None = None, example=None,
          cache: bool = True, load: bool = True, device=None, force: bool = False, **options):
    """Build `module` (a vdrt denoiser) into engine directory `out`; returns the loaded engine (or `out`).

    An existing non-empty `out` is refused unless `force=True`, which replaces an engine directory
    (never a directory that is not one).
    """
    check_args(module, out, device, shapes, force=force, cache=cache, load=load)
    check_backend(backend, precision, options)
    check_out(out, force)
    dtype = precision_dtype(precision)
    module = cast(module, dtype)
    prof = shapes_mod.profile(module.config, shapes or {})
    inputs, outputs = shapes_mod.signature(module.config, dtype)
    target = Target(CallWrapper(module, [s["name"] for s in inputs]), module.config.to_dict(), inputs, outputs, prof,
                    options=options)
    return build_target(target, backend, out, precision, example=example, cache=cache, load=load, device=device,
                        force=force)


def check_args(module, out, device, shapes, **switches) -> None:
    """The types of build()'s arguments (vdrt.errors.InputTypeError), and the device this process has."""
    from vdrt.errors import InputTypeError
    from vdrt.loader import check_device

    if not isinstance(module, torch.nn.Module) or not hasattr(module, "config"):
        raise InputTypeError(f"build() takes a vdrt denoiser module (vdrt.load_denoiser(...)), not a "
                             f"{type(module).__name__}")
    if not isinstance(out, (str, os.PathLike)):
        raise InputTypeError(f"out={out!r} must be the engine directory's path, not a {type(out).__name__}")
    if shapes is not None and not isinstance(shapes, dict):
        raise InputTypeError(f"shapes={shapes!r} must be a dict of dims -> (min, opt, max), e.g. "
                             "{'frames': (1, 5, 5), 'height': (8, 16, 16), 'width': (8, 16, 16)}")
    for name, v in switches.items():
        if not isinstance(v, bool):
            raise InputTypeError(f"{name}={v!r} must be True or False")
    if device is not None:
        check_device(device)


def check_backend(backend: str, precision: str, options: dict) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    if backend == "tensorrt":
        from vdrt.engines.tensorrt import import_tensorrt

        import_tensorrt()  # fail before minutes of export if TensorRT is missing
    mode = options.get("aoti_weights")
    if mode is not None and (backend != "aoti" or mode not in ("external", "in_so")):
        raise ConfigError(f"aoti_weights={mode!r}: the option belongs to the aoti backend and takes 'external' "
                          "(weights.safetensors beside the package, the default) or 'in_so' (linked into the .so)")
    if precision in ("fp8", "int8") and backend != "tensorrt":
        raise ConfigError(f"precision {precision} needs a quantized (Q/DQ) network and the tensorrt backend; "
                          "aoti and onnx engines take fp32, bf16 or fp16")


def check_out(out, force: bool) -> None:
    """Early refusal of an `out` that may not be written (checked again under the build's claim)."""
    claim_mod.check_replaceable(Path(out), force)


def precision_dtype(precision: str) -> torch.dtype:
    if precision in ("fp8", "int8"):
        return torch.bfloat16  # activations; the quantized layers carry their own types (strongly typed TRT)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16 (fp8/int8: tensorrt)")
    return PRECISIONS[precision]


def cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """An eval copy of `module` in `dtype` (Wan keeps its fp32 parts via to_dtype); the module itself if already."""
    if _is_cast(module, dtype) and not module.training:
        return module
    module = copy.deepcopy(module).eval().requires_grad_(False)
    return module.to_dtype(dtype) if hasattr(module, "to_dtype") else module.to(dtype)


def _is_cast(module: torch.nn.Module, dtype: torch.dtype) -> bool:
    """Already in `dtype` (all bf16, or as `to_dtype` leaves it: its FP32_PARAMS kept fp32)?"""
    keep = getattr(module, "FP32_PARAMS", None)
    if all(p.dtype == dtype for p in module.parameters()):
        return True
    return keep is not None and all(p.dtype == (torch.float32 if keep.search(n) else dtype)
                                    for n, p in module.named_parameters())


def module_device(module: torch.nn.Module, device=None) -> torch.device:
    have = next(module.parameters()).device
    if device is not None and torch.device(device) != have:
        raise ConfigError(f"the module is on {have} but device={device} was asked; move it with .to({device!r})")
    return have


def build_target(target: Target, backend: str, out, precision: str, example=None, cache: bool = True,
                 load: bool = True, device=None, force: bool | None = None):
    """Build `target` with `backend` into `out` (through the cache); the loaded engine, or `out` if not load.

    `out` is claimed for the whole build (export/claim.py): a concurrent build of it is refused.
    """
    dev = module_device(target.wrapper, device)
    if example is None:
        example = shapes_mod.example_inputs(target.inputs, target.profile, dev)
    example = tuple(example)
    out = Path(out)
    t0 = time.perf_counter()

    def build_into(workdir: Path) -> None:
        _build_into(workdir, target, backend, precision, example, dev)

    with claim_mod.building(out, force) as claim:
        if cache:
            key = cache_mod.cache_key(key_parts(target, backend, precision, dev))
            entry, hit = cache_mod.get_or_build(key, build_into)
            claim.publish(entry)
            log.info("engine %s: %s in %.1f s (cache %s, key %s)", out, "reused" if hit else "built",
                     time.perf_counter() - t0, "hit" if hit else "miss", key[:12])
        else:
            with claim.staging() as tmp:
                build_into(tmp)
    if not load:
        return out
    from vdrt.engines.loading import load as load_engine

    return load_engine(out, device=None if backend == "onnx" else dev)  # onnx: where onnxruntime can run it


def _build_into(workdir: Path, target: Target, backend: str, precision: str, example: tuple, dev) -> None:
    t0 = time.perf_counter()
    impl = importlib.import_module(BACKENDS[backend])
    log.info("building a %s engine (%s) on %s: profile %s", backend, precision, dev, target.profile.to_dict())
    files, times, prof = impl.build_artifacts(target, example, workdir, {**target.options, "precision": precision})
    t1 = time.perf_counter()
    manifest_mod.write(workdir, backend=backend, target=replace(target, profile=prof), precision=precision,
                       profile=prof, artifacts=files, device=dev,
                       build={"seconds": {**times, "hash_and_manifest": time.perf_counter() - t1,
                                          "total": time.perf_counter() - t0},
                              "options": _json_safe(target.options)})
    times["serialize"] = times.get("serialize", 0.0) + time.perf_counter() - t1
    log.info("build phases (s): %s", {k: round(v, 2) for k, v in times.items()})


def key_parts(target: Target, backend: str, precision: str, dev: torch.device) -> dict:
    from vdrt import ops

    return {"weights": cache_mod.weights_hash(target.wrapper), "config": target.model_config, "backend": backend,
            "precision": precision, "profile": target.profile.to_dict(), "inputs": target.inputs,
            "layout": target.layout, "toolchain": manifest_mod.toolchain(), "device": manifest_mod.device_info(dev),
            "ops": {op: [ops.get_choice(op), ops.available(op)] for op in ops.OPS},
            "options": _json_safe(target.options), "format_version": FORMAT_VERSION, "vdrt": vdrt.__version__}


def _json_safe(options: dict) -> dict:
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v)
            for k, v in options.items()}
