"""TensorRT backend: ONNX (vdrt.export.onnx) -> a TensorRT 10 engine, `model.plan` (+ `timing.cache`).

Written against the documented TensorRT 10 Python API and NOT run: TensorRT cannot be installed
on any machine of this project (its wheels come from NVIDIA's index only). What it does:

- `trt.Builder` + `create_network(flags)` (explicit batch is the only mode in TRT 10; the
  STRONGLY_TYPED flag for fp8/int8 Q/DQ networks, for weight streaming, or on request);
- `trt.OnnxParser.parse_from_file` (reads external `weights.bin` beside `model.onnx`);
- one optimization profile with min/opt/max for every dynamic input, from the shape profile;
- `set_memory_pool_limit(WORKSPACE)`, FP16/BF16 builder flags for weakly typed fp16/bf16;
- a persistent timing cache (`create_timing_cache` / `set_timing_cache`), kept per GPU and
  TensorRT version under the cache root and copied into the engine directory;
- optional `BuilderFlag.WEIGHT_STREAMING`;
- `build_serialized_network` -> `model.plan`. The intermediate ONNX files are removed unless
  `keep_onnx=True`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from vdrt.engines.tensorrt import import_tensorrt
from vdrt.errors import EngineError

log = logging.getLogger(__name__)

PLAN, TIMING = "model.plan", "timing.cache"


def profile_shapes(spec: dict, prof) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) shapes of one input for `IOptimizationProfile.set_shape`."""
    def at(which: str) -> tuple:
        return tuple(getattr(prof[d], which) if isinstance(d, str) else d for d in spec["shape"])

    return at("min"), at("opt"), at("max")


def strongly_typed(precision: str, options: dict) -> bool:
    return bool(options.get("strongly_typed")) or precision in ("fp8", "int8") or \
        bool(options.get("weight_streaming"))


def build_artifacts(target, example: tuple, workdir: Path, options: dict) -> tuple[list[str], dict, object]:
    trt = import_tensorrt()
    from vdrt.export import onnx as onnx_backend

    files, times, prof = onnx_backend.build_artifacts(target, example, workdir, options)
    t0 = time.perf_counter()
    timing_file = _timing_cache_file(trt, example[0].device)
    plan, timing = build_plan(trt, workdir / onnx_backend.ARTIFACT, target.inputs, prof, options,
                              timing_file.read_bytes() if timing_file.is_file() else b"")
    times["trt_build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (workdir / PLAN).write_bytes(plan)
    (workdir / TIMING).write_bytes(timing)
    _save_timing_cache(timing_file, timing)
    if not options.get("keep_onnx"):
        for f in files:
            (workdir / f).unlink()
        files = []
    times["serialize"] = times.get("serialize", 0.0) + time.perf_counter() - t0
    log.info("tensorrt: engine built in %.1f s (%.1f MB plan)", times["trt_build"], len(plan) / 1e6)
    return [PLAN, TIMING, *files], times, prof


def build_plan(trt, onnx_path: Path, inputs: list[dict], prof, options: dict, timing: bytes) -> tuple[bytes, bytes]:
    precision = options.get("precision", "bf16")
    logger = trt.Logger(trt.Logger.VERBOSE if options.get("verbose") else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    typed = strongly_typed(precision, options)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
    network = builder.create_network(flags)
    _parse(trt, network, logger, onnx_path)
    config = _config(trt, builder, inputs, prof, precision, typed, options)
    cache = config.create_timing_cache(timing)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def _parse(trt, network, logger, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")


def _config(trt, builder, inputs: list[dict], prof, precision: str, typed: bool, options: dict):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.get("workspace_bytes", 8 << 30)))
    config.builder_optimization_level = int(options.get("optimization_level", 3))
    if not typed and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if not typed and precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    if options.get("weight_streaming"):
        config.set_flag(trt.BuilderFlag.WEIGHT_STREAMING)
    profile = builder.create_optimization_profile()
    for spec in inputs:
        profile.set_shape(spec["name"], *profile_shapes(spec, prof))
    config.add_optimization_profile(profile)
    return config


def _timing_cache_file(trt, device) -> Path:
    import torch
    from vdrt.export.cache import cache_root

    major, minor = torch.cuda.get_device_capability(device)
    return cache_root().parent / "tensorrt" / f"timing-sm{major}{minor}-trt{trt.__version__}.cache"


def _save_timing_cache(path: Path, data: bytes) -> None:
    from filelock import FileLock

    from vdrt.fsutil import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"), atomic_path(path) as tmp:
        tmp.write_bytes(data)
