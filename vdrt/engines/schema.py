"""THE schema of `manifest.json` (format_version 2), as pydantic models: types, required keys, known values.

Strict: ints are ints (not bools, not strings), unknown keys are refused, and the cross-field rules
hold (every symbolic dim has a profile; min <= opt <= max; chunk records add up to the file size;
the artifact set is the backend's). `check(dict)` returns nothing or raises EngineError naming the
first bad key, e.g. `profiles.frames.max: Input should be a valid integer (got '5')`.

pydantic is imported here only, and this module only from `vdrt.engines.manifest.validate`.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from vdrt.errors import EngineError

# the same values as vdrt.engines.manifest's FORMAT_VERSION and DTYPES (tested), written here so that this module
# imports nothing of the manifest module, which imports it lazily: no import circle
FORMAT_VERSION = 2
DTYPE_NAMES = ("float32", "bfloat16", "float16", "int64", "int32", "float8_e4m3fn", "bool")
# backend -> (artifacts it always has, artifacts it may have)
ARTIFACT_SETS = {"aoti": ({"model.pt2"}, {"weights.safetensors"}),
                 "onnx": ({"model.onnx"}, {"weights.bin"}),
                 "tensorrt": ({"model.plan", "timing.cache"}, {"model.onnx", "weights.bin"})}

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
DimName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Size = Annotated[int, Field(ge=0)]


def _artifact_name(name: str) -> str:
    if name == "manifest.json" or not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"illegal artifact name {name!r} (artifacts are plain file names in the engine dir)")
    return name


ArtifactName = Annotated[str, AfterValidator(_artifact_name)]
Positive = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, protected_namespaces=())


class Tensor(_Strict):
    name: Name
    dtype: Literal[DTYPE_NAMES]
    shape: list[Union[Positive, DimName]]


class Range(_Strict):
    min: Positive
    opt: Positive
    max: Positive
    multiple: Positive = 1

    @model_validator(mode="after")
    def _ordered(self):
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"needs min <= opt <= max, got {self.min}, {self.opt}, {self.max}")
        return self


class Artifact(_Strict):
    sha256: Hex64
    bytes: Size
    chunk_bytes: Optional[Annotated[int, Field(ge=4096)]] = None
    chunk_sha256: Optional[list[Hex64]] = None

    @model_validator(mode="after")
    def _chunks_add_up(self):
        if (self.chunk_bytes is None) != (self.chunk_sha256 is None):
            raise ValueError("chunk_bytes and chunk_sha256 come together")
        if self.chunk_bytes is not None:
            want = max(1, math.ceil(self.bytes / self.chunk_bytes))
            if len(self.chunk_sha256) != want:
                raise ValueError(f"{self.bytes} bytes in chunks of {self.chunk_bytes} make {want} chunk hashes, "
                                 f"not {len(self.chunk_sha256)}")
        return self


class Device(_Strict):
    type: Literal["cpu", "cuda"]
    name: str
    sm: Annotated[str, StringConstraints(pattern=r"^(cpu|\d+\.\d+)$")]

    @model_validator(mode="after")
    def _sm_fits_type(self):
        if (self.type == "cpu") != (self.sm == "cpu"):
            raise ValueError(f"device type {self.type} with sm {self.sm!r}")
        return self


class SignatureRecord(_Strict):
    alg: Literal["ed25519"]
    key_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
    public_key: Hex64
    value: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{128}$")]


class Manifest(_Strict):
    format_version: Literal[FORMAT_VERSION]
    vdrt_version: str
    backend: Literal[tuple(ARTIFACT_SETS)]
    model_config_: dict = Field(alias="model_config")
    layout: Literal["vdrt", "svd"]
    precision: Literal["fp32", "bf16", "fp16", "fp8", "int8"]
    inputs: Annotated[list[Tensor], Field(min_length=1)]
    outputs: Annotated[list[Tensor], Field(min_length=1)]
    profiles: dict[DimName, Range]
    artifacts: dict[ArtifactName, Artifact]
    toolchain: dict[str, Optional[str]]
    device: Device
    build: dict
    fingerprint: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
    signature: Optional[SignatureRecord] = None

    @model_validator(mode="after")
    def _consistent(self):
        _check_names(self.inputs, "inputs")
        _check_names(self.outputs, "outputs")
        _check_dims(self.inputs + self.outputs, self.profiles)
        _check_artifacts(self.backend, self.artifacts)
        if self.precision in ("fp8", "int8") and self.backend != "tensorrt":
            raise ValueError(f"precision {self.precision} exists only for tensorrt engines, not {self.backend}")
        if "family" not in self.model_config_:
            raise ValueError("model_config has no 'family'")
        return self


def _check_names(tensors: list, where: str) -> None:
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ValueError(f"{where} repeat a name: {names}")


def _check_dims(tensors: list, profiles: dict) -> None:
    used = {d for t in tensors for d in t.shape if isinstance(d, str)}
    missing = sorted(used - set(profiles))
    if missing:
        raise ValueError(f"dims {missing} are used by inputs/outputs but have no profile")


def _check_artifacts(backend: str, artifacts: dict) -> None:
    must, may = ARTIFACT_SETS[backend]
    missing, foreign = sorted(must - set(artifacts)), sorted(set(artifacts) - must - may)
    if missing or foreign:
        raise ValueError(f"the {backend} backend writes {sorted(must)} (+ optionally {sorted(may)}); this manifest "
                         f"lists {sorted(artifacts)}" + (f", lacking {missing}" if missing else "")
                         + (f", with foreign {foreign}" if foreign else ""))


def check(m: dict, where) -> None:
    """Validate the manifest dict `m` (read from `where`); EngineError naming the first bad key otherwise."""
    try:
        Manifest.model_validate(m)
    except ValidationError as e:
        raise EngineError(f"{where}/manifest.json is invalid: {describe(e.errors()[0])}; rebuild the engine "
                          "with `vdrt build`") from None


def describe(err: dict) -> str:
    """One pydantic error as `key.path: what (got value)`, with the key named as in manifest.json."""
    loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after", "int", "str", "constrained-str", "[key]"))
    loc = loc.replace("model_config_", "model_config")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"lacks the key {loc!r}"
    if err["type"] == "extra_forbidden":
        return f"has an unknown key {loc!r}"
    if err["type"] == "literal_error":
        return f"unknown {err['loc'][-1]} {err['input']!r} at {loc} ({msg})"
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or err["type"].startswith("value_error") else f" (got {got!r})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"
