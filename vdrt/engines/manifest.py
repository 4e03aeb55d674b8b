"""The engine manifest: reading and validation, its fingerprint, device checks, and the call-time shape check.

`manifest.json` (format_version 2) describes an engine directory (docs/engine-format.md):
backend, model_config, inputs/outputs (names, dtypes, symbolic shapes), profiles (min/opt/max
and the multiple each dynamic dim must be, in latent units), precision, artifacts (sha256 and
size of every file), toolchain versions, the build device (GPU name + sm, or cpu) and build
facts. Everything here reads JSON and hashes files: nothing is deserialized, so a tampered or
foreign engine is refused before any of its code is loaded. The schema itself is
`vdrt.engines.schema` (pydantic, imported when a manifest is validated); the fingerprint is a
sha256 over the canonical JSON of everything else in the manifest, so a hand-edited profile,
backend or artifact list is refused; the optional ed25519 signature covers the same bytes
(checked in `vdrt.engines.integrity`).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vdrt.errors import EngineError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the fingerprint (and the optional signature); 1 had neither
KNOWN_VERSIONS = (FORMAT_VERSION,)
BACKENDS = ("aoti", "onnx", "tensorrt")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int64": torch.int64,
          "int32": torch.int32, "float8_e4m3fn": torch.float8_e4m3fn, "bool": torch.bool}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few KB; a bigger file is not one
SIGNED_PREFIX = b"vdrt-engine-manifest\n"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def read(path) -> dict:
    """Parse and validate `path/manifest.json` (schema, format version, fingerprint); no artifact is touched."""
    m = read_json(path)
    validate(m, path)
    return m


def read_json(path) -> dict:
    """`path/manifest.json` as parsed JSON (no validation); EngineError if unreadable, oversized or not JSON."""
    f = Path(path) / "manifest.json"
    try:
        if f.stat().st_size > MAX_MANIFEST_BYTES:
            raise EngineError(f"{f} is {f.stat().st_size} bytes, not a manifest; rebuild the engine")
        return json.loads(f.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_nan)
    except EngineError:
        raise
    except (OSError, ValueError) as e:
        raise EngineError(f"{f} is unreadable ({e}); rebuild the engine with `vdrt build`") from e


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"duplicate key(s) {dup}")
    return dict(pairs)


def _no_nan(token: str):
    raise ValueError(f"{token} is not valid JSON")


def validate(m: dict, path) -> None:
    """The manifest's format version, its schema (vdrt.engines.schema) and its fingerprint; EngineError otherwise."""
    check_schema(m, path)
    check_fingerprint(m, path)


def check_schema(m: dict, path) -> None:
    if not isinstance(m, dict):
        raise EngineError(f"{path}/manifest.json is not a JSON object; rebuild the engine")
    version = m.get("format_version")
    if version not in KNOWN_VERSIONS or isinstance(version, bool):
        old = " (format 1 predates the manifest fingerprint)" if version == 1 else ""
        raise EngineError(f"{path}: engine format_version {version!r} is not known to this vdrt (it reads "
                          f"{list(KNOWN_VERSIONS)}){old}; rebuild the engine with this vdrt, or use the vdrt that "
                          f"built it ({m.get('vdrt_version', 'unknown')})")
    try:
        from vdrt.engines import schema
    except ImportError as e:
        raise EngineError("pydantic is not installed, and vdrt reads engine manifests with it (a dependency of "
                          "vdrt): `pip install 'pydantic>=2.6'`") from e
    schema.check(m, path)


def check_fingerprint(m: dict, path) -> None:
    if m["fingerprint"] != fingerprint(m):
        raise EngineError(f"{path}/manifest.json was changed after the build: its fingerprint does not match its "
                          "content (a profile, backend, artifact list or config edited by hand is refused: the "
                          "compiled artifacts were built for the original). Rebuild the engine with `vdrt build`")


def canonical(m: dict, without=("fingerprint", "signature")) -> bytes:
    """The manifest minus `without`, as sorted, compact, ASCII JSON: what the fingerprint and signature cover."""
    body = {k: v for k, v in m.items() if k not in without}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def fingerprint(m: dict) -> str:
    """sha256 over everything in the manifest but the fingerprint and signature (so over every artifact's hash)."""
    return "sha256:" + hashlib.sha256(canonical(m)).hexdigest()


def signed_bytes(m: dict) -> bytes:
    """What an ed25519 signature covers: a domain prefix + the manifest with its fingerprint, without the signature."""
    return SIGNED_PREFIX + canonical(m, without=("signature",))


def verify_artifacts(path, m: dict) -> None:
    """Every artifact exists with its recorded size and sha256 (EngineError naming the file otherwise).

    Artifacts recorded with `chunk_sha256` (files over two chunks) are checked piece by piece on
    several threads; the others with one sha256 of the whole file.
    """
    path = Path(path)
    for name, rec in m["artifacts"].items():
        problem = artifact_problem(path, name, rec)
        if problem:
            raise EngineError(f"{path}: {problem}")


def artifact_problem(path: Path, name: str, rec: dict) -> str | None:
    """What is wrong with artifact `name` of engine dir `path` (missing, a link, size, sha256), or None."""
    f = Path(path) / name
    if f.is_symlink():
        return f"artifact {name} is a symbolic link; an engine directory holds its own files. Rebuild it"
    if not f.is_file():
        return f"artifact {name} is missing; the engine directory is incomplete, rebuild it"
    try:
        matches = f.stat().st_size == rec.get("bytes") and _hash_matches(f, rec)
    except OSError as e:
        return f"artifact {name} cannot be read ({e.strerror}); check the engine directory's permissions"
    if not matches:
        return (f"artifact {name} does not match its sha256 in manifest.json (corrupted or tampered with); "
                "refusing to load it. Rebuild the engine")
    return None


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
