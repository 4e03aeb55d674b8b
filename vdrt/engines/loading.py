"""`load(path, device)`: validate an engine directory, then hand it to its backend.

Order matters: the manifest's schema and format version, the sha256 of every artifact and the
device compatibility are all checked BEFORE any artifact is deserialized, so a tampered `.so`
inside a `.pt2` or a plan for another GPU never gets loaded into the process.
"""
from __future__ import annotations

import importlib
import logging
import time

import torch

from vdrt.engines import manifest as mf
from vdrt.errors import EngineError

log = logging.getLogger(__name__)

RUNTIMES = {"aoti": "vdrt.engines.aoti", "onnx": "vdrt.engines.onnxrt", "tensorrt": "vdrt.engines.tensorrt"}


def load(path, device=None, **options):
    """Validate `path` and return its engine on `device` (default: where it was built, else CPU for ONNX).

    Options go to the backend: `cuda_graphs=True` (aoti, tensorrt), `providers=[...]` (onnx),
    `weight_streaming_budget=bytes` (tensorrt).
    """
    t0 = time.perf_counter()
    m = mf.read(path)
    mf.verify_artifacts(path, m)
    dev = torch.device(device) if device is not None else mf.default_device(m)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {dev} was asked for but this process has no CUDA GPU")
    mf.check_device(m, dev)
    runtime = importlib.import_module(RUNTIMES[m["backend"]])
    engine = runtime.load(path, m, dev, **options)
    log.info("loaded %s engine %s on %s in %.2f s", m["backend"], path, dev, time.perf_counter() - t0)
    return engine
