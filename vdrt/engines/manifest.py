"""The engine manifest: schema, reading and validation, and the call-time shape check.

`manifest.json` (format_version 1) describes an engine directory (docs/engine-format.md):
backend, model_config, inputs/outputs (names, dtypes, symbolic shapes), profiles (min/opt/max
and the multiple each dynamic dim must be, in latent units), precision, artifacts (sha256 and
size of every file), toolchain versions, the build device (GPU name + sm, or cpu) and build
facts. Everything here reads JSON and hashes files: nothing is deserialized, so a tampered or
foreign engine is refused before any of its code is loaded.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vdrt.errors import EngineError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KNOWN_VERSIONS = (1,)
BACKENDS = ("aoti", "onnx", "tensorrt")
REQUIRED = ("format_version", "vdrt_version", "backend", "model_config", "precision", "inputs", "outputs",
            "profiles", "artifacts", "toolchain", "device", "build")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int64": torch.int64,
          "int32": torch.int32, "float8_e4m3fn": torch.float8_e4m3fn, "bool": torch.bool}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def read(path) -> dict:
    """Parse and validate `path/manifest.json` (schema + format version); no artifact is touched."""
    path = Path(path)
    try:
        m = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{path}/manifest.json is unreadable ({e}); rebuild the engine with `vdrt build`") from e
    validate(m, path)
    return m


def validate(m: dict, path) -> None:
    if not isinstance(m, dict):
        raise EngineError(f"{path}/manifest.json is not a JSON object; rebuild the engine")
    version = m.get("format_version")
    if version not in KNOWN_VERSIONS:
        raise EngineError(f"{path}: engine format_version {version!r} is not known to this vdrt (it reads "
                          f"{list(KNOWN_VERSIONS)}); rebuild the engine with this vdrt, or use the vdrt that built it "
                          f"({m.get('vdrt_version', 'unknown')})")
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise EngineError(f"{path}/manifest.json lacks {missing}; the directory is incomplete, rebuild the engine")
    if m["backend"] not in BACKENDS:
        raise EngineError(f"{path}: unknown backend {m['backend']!r} (known: {list(BACKENDS)})")
    _check_artifact_names(m["artifacts"], path)
    for spec in m["inputs"] + m["outputs"]:
        if spec.get("dtype") not in DTYPES:
            raise EngineError(f"{path}: tensor {spec.get('name')!r} has unknown dtype {spec.get('dtype')!r}")


def _check_artifact_names(artifacts: dict, path) -> None:
    if not isinstance(artifacts, dict) or not artifacts:
        raise EngineError(f"{path}/manifest.json lists no artifacts; rebuild the engine")
    for name in artifacts:
        if "/" in name or "\\" in name or name.startswith(".") or name == "manifest.json":
            raise EngineError(f"{path}/manifest.json names an illegal artifact {name!r}; refusing the engine")


def verify_artifacts(path, m: dict) -> None:
    """Every artifact exists with its recorded size and sha256 (EngineError naming the file otherwise).

    Artifacts recorded with `chunk_sha256` (files over two chunks) are checked piece by piece on
    several threads; the others with one sha256 of the whole file.
    """
    path = Path(path)
    for name, rec in m["artifacts"].items():
        f = path / name
        if not f.is_file():
            raise EngineError(f"{path}: artifact {name} is missing; the engine directory is incomplete, rebuild it")
        if f.stat().st_size != rec.get("bytes") or not _hash_matches(f, rec):
            raise EngineError(f"{path}: artifact {name} does not match its sha256 in manifest.json (corrupted or "
                              "tampered with); refusing to load it. Rebuild the engine")


def _hash_matches(f: Path, rec: dict) -> bool:
    from vdrt.fsutil import sha256_chunks, sha256_file

    chunk, chunks = rec.get("chunk_bytes"), rec.get("chunk_sha256")
    if chunks is None:
        return sha256_file(f) == rec.get("sha256")
    if not isinstance(chunk, int) or chunk < 4096 or not isinstance(chunks, list):
        return False  # a malformed record never passes
    return sha256_chunks(f, chunk) == chunks


# ---------------------------------------------------------------- device compatibility


def default_device(m: dict) -> torch.device:
    """Where the engine was built if this process has it; ONNX on CUDA only with onnxruntime's CUDA provider."""
    built = m["device"].get("type", "cpu")
    if m["backend"] == "onnx":
        return torch.device("cuda", torch.cuda.current_device()) if built == "cuda" and _ort_cuda() else \
            torch.device("cpu")
    if built == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if built == "cpu":
        return torch.device("cpu")
    raise EngineError(f"this {m['backend']} engine was built for CUDA ({describe_device(m)}) but this process has no "
                      "CUDA GPU; run it on a GPU, or build a CPU engine (aoti/onnx) here")


def _ort_cuda() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def describe_device(m: dict) -> str:
    d = m["device"]
    return "cpu" if d.get("type") == "cpu" else f"{d.get('name')}, sm_{str(d.get('sm', '?')).replace('.', '')}"


def check_device(m: dict, device: torch.device) -> None:
    """Refuse a device the engine's compiled code cannot run on (EngineError naming both)."""
    built, backend = m["device"].get("type", "cpu"), m["backend"]
    if backend == "onnx":
        return  # ONNX graphs are portable; the execution provider decides
    if device.type != built:
        raise EngineError(f"this {backend} engine was built for {describe_device(m)}; it cannot run on {device.type}. "
                          f"Rebuild it on the target device (vdrt build ... --device {device.type})")
    if built == "cuda":
        _check_sm(m, device)


def _check_sm(m: dict, device: torch.device) -> None:
    have = torch.cuda.get_device_capability(device)
    try:
        want = tuple(int(v) for v in str(m["device"]["sm"]).split("."))
    except (KeyError, ValueError) as e:
        raise EngineError(f"manifest device sm {m['device'].get('sm')!r} is malformed; rebuild the engine") from e
    exact = m["backend"] == "tensorrt"  # TensorRT plans are tied to one SM; cubins run within a major arch
    ok = want == have if exact else (want[0] == have[0] and want[1] <= have[1])
    if not ok:
        name = torch.cuda.get_device_name(device)
        raise EngineError(f"this {m['backend']} engine was built for {describe_device(m)}; this GPU is {name} "
                          f"(sm_{have[0]}{have[1]}), which cannot run its kernels. Rebuild the engine on this GPU")


# ---------------------------------------------------------------- call-time signature and profile check


@dataclass(frozen=True)
class Signature:
    """The engine's inputs in call order with their symbolic shapes, and the profile ranges per symbol."""

    inputs: tuple
    outputs: tuple
    profiles: dict

    @classmethod
    def from_manifest(cls, m: dict) -> "Signature":
        return cls(tuple(m["inputs"]), tuple(m["outputs"]), dict(m["profiles"]))

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.inputs]

    def bind(self, device, latents, timestep, context, cond: dict) -> list[torch.Tensor]:
        """Protocol args -> input tensors in engine order, checked against the profile, on `device` in their dtypes."""
        given = {"latents": latents, "timestep": timestep, "context": context,
                 **{k: v for k, v in cond.items() if v is not None}}
        self._check_names(given)
        sizes: dict[str, tuple[int, str]] = {}
        out = []
        for spec in self.inputs:
            t = _as_tensor(given[spec["name"]], spec, sizes)
            self._check_shape(spec, t, sizes)
            out.append(t.to(device=device, dtype=DTYPES[spec["dtype"]]).contiguous())
        self._check_ranges(sizes)
        return out

    def output_shape(self, inputs: list[torch.Tensor], index: int = 0) -> tuple[int, ...]:
        sizes = {}
        for spec, t in zip(self.inputs, inputs):
            for d, n in zip(spec["shape"], t.shape):
                if isinstance(d, str):
                    sizes[d] = n
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.outputs[index]["shape"])

    def _check_names(self, given: dict) -> None:
        names = self.names
        extra = sorted(set(given) - set(names))
        if extra:
            raise EngineError(f"this engine takes no input(s) {extra}; its inputs are {names}")
        missing = [n for n in names if n not in given]
        if missing:
            raise EngineError(f"this engine needs input(s) {missing} (its inputs are {names})")

    def _check_shape(self, spec: dict, t: torch.Tensor, sizes: dict) -> None:
        name, want = spec["name"], spec["shape"]
        if t.ndim != len(want):
            raise EngineError(f"input {name} must have shape {_show(want)}; got {tuple(t.shape)}")
        for d, n in zip(want, t.shape):
            if isinstance(d, int) and n != d:
                raise EngineError(f"input {name} must have shape {_show(want)}; got {tuple(t.shape)}")
            if isinstance(d, str):
                prev = sizes.setdefault(d, (n, name))
                if prev[0] != n:
                    raise EngineError(f"{d} differs between inputs {prev[1]} ({prev[0]}) and {name} ({n})")

    def _check_ranges(self, sizes: dict) -> None:
        for dim, (n, name) in sizes.items():
            p = self.profiles.get(dim)
            if p is None:
                continue
            if not p["min"] <= n <= p["max"]:
                raise EngineError(f"{dim}={n} (input {name}) is outside this engine's profile: {dim} must be in "
                                  f"[{p['min']}, {p['max']}] (latent units); rebuild the engine with a wider --{dim}")
            if n % p.get("multiple", 1):
                raise EngineError(f"{dim}={n} (input {name}) must be a multiple of {p['multiple']} for this engine")


def _as_tensor(v, spec: dict, sizes: dict) -> torch.Tensor:
    """Timesteps may come as a number or a 0-d/1-element tensor: expand them to (batch,) like the eager models."""
    t = v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float32)
    if spec["name"] == "timestep" and t.numel() == 1 and spec["shape"] == ["batch"] and "batch" in sizes:
        t = t.reshape(1).expand(sizes["batch"][0])
    return t


def _show(shape: list) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
