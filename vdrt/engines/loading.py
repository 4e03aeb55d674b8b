"""`load(path, device)`: verify an engine directory, then hand it to its backend.

Order matters: `vdrt.engines.integrity.check` (the manifest's schema, format version, fingerprint
and signature; exactly the listed files, each with its sha256; AOTI: the manifest against what
the package was compiled for) and the device compatibility are all checked BEFORE any artifact
is deserialized, so a tampered `.so` inside a `.pt2`, an unlisted file or a plan for another GPU
never gets loaded into the process.
"""
from __future__ import annotations

import importlib
import logging
import time

import torch

from vdrt.engines import integrity
from vdrt.engines import manifest as mf
from vdrt.errors import EngineError

log = logging.getLogger(__name__)

RUNTIMES = {"aoti": "vdrt.engines.aoti", "onnx": "vdrt.engines.onnxrt", "tensorrt": "vdrt.engines.tensorrt"}


def load(path, device=None, trusted_keys=None, **options):
    """Verify `path` and return its engine on `device` (default: where it was built, else CPU for ONNX).

    `trusted_keys`: ed25519 public keys (PEM/OpenSSH files, hex or raw bytes); when given (or
    $VDRT_TRUSTED_KEYS is set) only an engine signed by one of them loads. Options go to the
    backend: `cuda_graphs=True` (aoti, tensorrt), `providers=[...]` (onnx),
    `weight_streaming_budget=bytes` (tensorrt).
    """
    t0 = time.perf_counter()
    m = integrity.check(path, trusted_keys)
    dev = torch.device(device) if device is not None else mf.default_device(m)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {dev} was asked for but this process has no CUDA GPU")
    mf.check_device(m, dev)
    runtime = importlib.import_module(RUNTIMES[m["backend"]])
    engine = runtime.load(path, m, dev, **options)
    log.info("loaded %s engine %s on %s in %.2f s", m["backend"], path, dev, time.perf_counter() - t0)
    return engine
