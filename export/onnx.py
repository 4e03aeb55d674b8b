"""ONNX backend: torch.export -> `torch.onnx.export(..., dynamo=True)` -> `model.onnx` (+ `weights.bin`).

Opset 18: the dynamo exporter's native opset (torchlib), parsed by TensorRT 10's ONNX parser and
by onnxruntime. Dynamic dims come from the exported program (named after the profile's dims).
Weights go to an external `weights.bin` when they pass ~1.8 GiB (protobuf's 2 GB limit);
the saved file is checked with `onnx.checker` (by path, so external data is checked too).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from vdrt.export.trace import export_program, narrow_profile

from vdrt.errors import require

log = logging.getLogger(__name__)

ARTIFACT, WEIGHTS = "model.onnx", "weights.bin"
OPSET = 18
EXTERNAL_DATA_BYTES = int(1.8 * 2**30)


def build_artifacts(target, example: tuple, workdir: Path, options: dict) -> tuple[list[str], dict, object]:
    """Write `model.onnx` (+ `weights.bin`) into `workdir`; returns (artifact names, phase seconds, profile)."""
    times = {}
    t0 = time.perf_counter()
    ep = export_program(target, example)
    prof = narrow_profile(target, ep)
    times["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    program = to_onnx(ep, target, options.get("opset", OPSET), bool(options.get("onnx_optimize")))
    times["compile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    files = save(program, Path(workdir), force_external=bool(options.get("external_data")))
    times["serialize"] = time.perf_counter() - t0
    log.info("onnx: export %.1f s, convert %.1f s, save + check %.1f s", times["export"], times["compile"],
             times["serialize"])
    return files, times, prof


def to_onnx(ep, target, opset: int, optimize: bool = False):
    """ExportedProgram -> ONNXProgram. onnxscript's optimizer is off by default: its pattern rewriter takes
    minutes on a UNet, and onnxruntime and TensorRT optimize the graph themselves (`onnx_optimize=True`)."""
    require("onnxscript")
    import torch

    names = [s["name"] for s in target.inputs]
    return torch.onnx.export(ep, (), dynamo=True, opset_version=opset, input_names=names,
                             output_names=[s["name"] for s in target.outputs], optimize=optimize,
                             verbose=False)  # no progress lines on stdout (our log says what happened)


def save(program, workdir: Path, force_external: bool = False) -> list[str]:
    onnx = require("onnx")
    ir = _onnx_ir()
    size = sum(v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None)
    external = force_external or size > EXTERNAL_DATA_BYTES
    path = workdir / ARTIFACT
    ir.save(program.model, path, external_data=WEIGHTS if external else None)
    onnx.checker.check_model(str(path))
    log.info("onnx: %s (%.1f MB of weights%s), checker passed", path.name, size / 1e6,
             f" in {WEIGHTS}" if external else "")
    return [ARTIFACT, WEIGHTS] if external else [ARTIFACT]


def _onnx_ir():
    try:
        import onnx_ir as ir
    except ImportError:
        from onnxscript import ir
    return ir
