"""Hand-made engines for the manifest / integrity / verify tests (a unique module name: test folders share one
import namespace). The engine is a one-node ONNX graph, prediction = 2 * latents, with a manifest written here,
so every check runs in milliseconds without the exporter; the AOTI-specific checks use real builds
(tests/export/test_engine_integrity.py)."""
from __future__ import annotations

import json
from pathlib import Path

import vdrt
from vdrt.engines import manifest as mf
from vdrt.fsutil import sha256_file

PROFILES = {"batch": (1, 1, 2, 1), "frames": (1, 3, 5, 1), "height": (4, 16, 32, 4), "width": (4, 16, 32, 4),
            "text_len": (1, 16, 32, 1)}


def onnx_double(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    grid = ["batch", 3, "frames", "height", "width"]
    ins = [helper.make_tensor_value_info("latents", TensorProto.FLOAT, grid),
           helper.make_tensor_value_info("timestep", TensorProto.FLOAT, ["batch"]),
           helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", "text_len", 64])]
    out = helper.make_tensor_value_info("prediction", TensorProto.FLOAT, grid)
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["latents", "two"], ["prediction"])], "double", ins, [out],
                              initializer=[two])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)


def manifest_for(d: Path, names=("model.onnx",), backend: str = "onnx") -> dict:
    """A valid manifest for the files `names` in `d` (factorized-tiny's config, fp32), fingerprinted."""
    grid = ["frames", "height", "width"]
    m = {"format_version": mf.FORMAT_VERSION, "vdrt_version": vdrt.__version__, "backend": backend,
         "model_config": vdrt.models.config_from_name("factorized-tiny").to_dict(), "layout": "vdrt",
         "precision": "fp32",
         "inputs": [{"name": "latents", "dtype": "float32", "shape": ["batch", 3, *grid]},
                    {"name": "timestep", "dtype": "float32", "shape": ["batch"]},
                    {"name": "context", "dtype": "float32", "shape": ["batch", "text_len", 64]}],
         "outputs": [{"name": "prediction", "dtype": "float32", "shape": ["batch", 3, *grid]}],
         "profiles": {k: dict(zip(("min", "opt", "max", "multiple"), v)) for k, v in PROFILES.items()},
         "artifacts": {n: {"sha256": sha256_file(d / n), "bytes": (d / n).stat().st_size} for n in names},
         "toolchain": {"torch": "2.13.0"}, "device": {"type": "cpu", "name": "cpu", "sm": "cpu"},
         "build": {"time": "2026-11-29T00:00:00+00:00", "seconds": {"total": 1.5}, "options": {}}}
    m["fingerprint"] = mf.fingerprint(m)
    return m


def write_engine(d: Path) -> Path:
    """A valid ONNX engine directory at `d`."""
    d.mkdir(parents=True, exist_ok=True)
    onnx_double(d / "model.onnx")
    write_manifest(d, manifest_for(d))
    return d


def write_manifest(d: Path, m: dict, refingerprint: bool = False) -> None:
    if refingerprint:
        m["fingerprint"] = mf.fingerprint(m)
    (d / "manifest.json").write_text(json.dumps(m, indent=1))


def edit_manifest(d: Path, edit, refingerprint: bool = True) -> dict:
    """Apply `edit(m)` to d's manifest; a consistent edit (fingerprint recomputed) unless told otherwise."""
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    write_manifest(d, m, refingerprint)
    return m
