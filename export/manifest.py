"""Writing `manifest.json` (reading and validation live in the runtime: vdrt.engines.manifest)."""
from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import torch

import vdrt
from vdrt import fsutil
from vdrt.engines.manifest import FORMAT_VERSION
from vdrt.errors import dist_version
from vdrt.fsutil import atomic_path, sha256_file

TOOLS = {"torch": "torch", "triton": "triton", "onnx": "onnx", "onnxscript": "onnxscript",
         "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "diffusers": "diffusers"}


def toolchain() -> dict:
    """Versions that decide what a build produces (read from package metadata: nothing heavy is imported)."""
    tools = {name: dist_version(dist) for name, dist in TOOLS.items()}
    if tools["onnxruntime"] is None:
        tools["onnxruntime"] = dist_version("onnxruntime-gpu")
    tools["torch"] = torch.__version__
    return {"python": platform.python_version(), "cuda": torch.version.cuda, **tools}


def device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"type": "cpu", "name": "cpu", "sm": "cpu"}
    major, minor = torch.cuda.get_device_capability(device)
    return {"type": "cuda", "name": torch.cuda.get_device_name(device), "sm": f"{major}.{minor}"}


def artifact_records(workdir: Path, names: list[str]) -> dict:
    """sha256 and size of each artifact; files over two chunks also get per-chunk hashes (fast parallel check)."""
    return {n: _record(workdir / n) for n in names}


def _record(f: Path) -> dict:
    rec = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    chunk = fsutil.CHUNK_BYTES
    if rec["bytes"] > 2 * chunk:
        rec.update(chunk_bytes=chunk, chunk_sha256=fsutil.sha256_chunks(f, chunk))
    return rec


def write(workdir: Path, *, backend: str, target, precision: str, profile, artifacts: list[str],
          device: torch.device, build: dict) -> dict:
    """Hash the artifacts and write `workdir/manifest.json`; returns the manifest."""
    m = {"format_version": FORMAT_VERSION, "vdrt_version": vdrt.__version__, "backend": backend,
         "model_config": target.model_config, "layout": target.layout, "precision": precision,
         "inputs": target.inputs, "outputs": target.outputs, "profiles": profile.to_dict(),
         "artifacts": artifact_records(workdir, artifacts), "toolchain": toolchain(), "device": device_info(device),
         "build": {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **build}}
    with atomic_path(workdir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    return m
