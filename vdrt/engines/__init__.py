"""Engines: one protocol, several backends (torch, aoti, onnxrt, tensorrt).

`load_engine(dir)` validates an engine directory's manifest and returns an engine with the
denoiser's call signature.
"""
from __future__ import annotations

from pathlib import Path

from vdrt.errors import EngineError


def load_engine(path, device=None, cuda_graphs: bool = False, trusted_keys=None):
    """Load the engine directory `path` (see docs/engine-format.md); CUDA graphs per shape bucket if asked;
    `trusted_keys`: only an engine signed by one of these ed25519 keys loads (also $VDRT_TRUSTED_KEYS)."""
    from vdrt.engines import loading
    from vdrt.errors import InputTypeError
    from vdrt.loader import check_device

    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise InputTypeError(f"load_engine takes an engine directory path, not a {type(path).__name__}")
    if not isinstance(cuda_graphs, bool):
        raise InputTypeError(f"cuda_graphs={cuda_graphs!r} must be True or False")
    device = None if device is None else check_device(device)
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise EngineError(f"{path} is not an engine directory (no manifest.json); build one with `vdrt build`")
    return loading.load(path, device=device, cuda_graphs=cuda_graphs, trusted_keys=trusted_keys)


def inspect_engine(path) -> dict:
    """The manifest of engine directory `path`, as a dict (no artifact is deserialized)."""
    import json

    path = Path(path)
    try:
        return json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{path}/manifest.json is unreadable ({e}); rebuild the engine") from e
