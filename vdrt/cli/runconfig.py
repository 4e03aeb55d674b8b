"""TOML run configs (`--config run.toml`): parsed by ONE typed schema, then overridden by command-line flags.

Keys are the flags' names (dashes or underscores), at the top level or in a `[generate]` table.
Types are strict: a bool is not a number, a string is not a bool (`trust-pickle = "false"` is
refused, not read as true), an int is not a float for `seed`. Unknown keys are refused with the
list of known ones. `lora` takes a list of "PATH[:SCALE]" strings (or one); a `--lora` on the command line
replaces the config's whole list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from vdrt.errors import ConfigError


def _schema():
    """The run-config schema (pydantic, imported only when a config is read)."""
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    class RunConfig(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")
        model: Optional[str] = None
        prompt: Optional[str] = None
        out: Optional[str] = None
        frames: Optional[int] = Field(None, gt=0)
        height: Optional[int] = Field(None, gt=0)
        width: Optional[int] = Field(None, gt=0)
        steps: Optional[int] = Field(None, gt=0)
        guidance: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
        seed: Optional[int] = Field(None, ge=0, lt=2**63)
        sampler: Optional[str] = None
        shift: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
        recipe: Optional[str] = None
        lora: Optional[list[str]] = None  # "PATH[:SCALE]" strings (one string is taken as a list of one)
        mode: Optional[str] = None
        image: Optional[str] = None
        video: Optional[str] = None
        mask: Optional[str] = None
        strength: Optional[float] = Field(None, gt=0, le=1)
        known_frames: Optional[int] = Field(None, gt=0)
        negative_prompt: Optional[str] = None
        prompt_embeds: Optional[str] = None
        fps: Optional[int] = Field(None, gt=0)
        device: Optional[str] = None
        precision: Optional[str] = None
        dtype: Optional[str] = None  # older spelling of precision (float32 | bfloat16 | float16)
        attention: Optional[str] = None
        sparse: Optional[str] = None
        dense_steps: Optional[int] = Field(None, ge=0)
        cache: Optional[str] = None  # teacache:0.2 | magcache:0.1 | fbcache:0.1 (checked by cachespec.parse)
        gpus: Optional[int] = Field(None, gt=0)
        threads: Optional[int] = Field(None, gt=0)
        cuda_graphs: Optional[bool] = None
        trust_pickle: Optional[bool] = None
        no_progress: Optional[bool] = None
        force: Optional[bool] = None

        @field_validator("lora", mode="before")
        @classmethod
        def _one_lora(cls, v):
            return [v] if isinstance(v, str) else v

    return RunConfig


def merge_toml(cli: dict, path) -> dict:
    """The run config's keys, typed and checked, under the command line's non-None flags."""
    if not path:
        return dict(cli)
    data = read_toml(Path(path))
    table = data.get("generate", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [generate] must be a table of settings")
    merged = {k: v for k, v in _validated(table, path).items() if v is not None}
    merged.update({k: v for k, v in cli.items() if v is not None})
    return {**{k: None for k in cli}, **merged}


def _validated(table: dict, path) -> dict:
    from pydantic import ValidationError

    schema = _schema()
    try:
        return schema(**{k.replace("-", "_"): v for k, v in table.items()}).model_dump()
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]).replace("_", "-")
        if err["type"] == "extra_forbidden":
            known = sorted(k.replace("_", "-") for k in schema.model_fields)
            raise ConfigError(f"{path}: unknown key {key!r}; known keys: {known}") from None
        raise ConfigError(f"{path}: {key} = {err.get('input')!r}: {err['msg'].lower()}") from None


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read run config {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"run config {path} is not UTF-8 text (TOML): {e.reason} at byte {e.start}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"run config {path} is not valid TOML: {e}") from e


def parse_precision(name, flag: str = "--precision"):
    """fp32 | bf16 | fp16 (or float32 | bfloat16 | float16) -> torch dtype; None stays None (device default)."""
    from vdrt.pipeline.sources import PRECISIONS, precision_name

    key = precision_name(name, flag)
    return None if key is None else PRECISIONS[key]


def read_embeds(path) -> dict:
    """A safetensors file with 'prompt_embeds' ((L, D) or (1, L, D)) and optionally 'negative_prompt_embeds'."""
    from vdrt.checkpoint import read_safetensors
    from vdrt.errors import MediaError

    p = Path(path)
    if not p.is_file():
        raise MediaError(f"prompt embeddings file {p} does not exist")
    tensors = read_safetensors(p)
    if "prompt_embeds" not in tensors:
        raise ConfigError(f"{p} has no 'prompt_embeds' tensor (it has {sorted(tensors)})")
    return {k: tensors[k] for k in ("prompt_embeds", "negative_prompt_embeds") if k in tensors}


parse_dtype = parse_precision  # its older name (benchmarks/parallel_step.py)
