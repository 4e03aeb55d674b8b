"""TOML run configs (`--config run.toml`) merged under command-line flags, and flag parsing helpers."""
from __future__ import annotations

from pathlib import Path

import torch

from vdrt.errors import ConfigError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def merge_toml(cli: dict, path) -> dict:
    """Keys of the TOML file (top level or a [generate] table; dashes or underscores) under the CLI's non-None flags."""
    if not path:
        return dict(cli)
    data = read_toml(Path(path))
    table = data.get("generate", data)
    known = set(cli)
    merged = {}
    for k, v in table.items():
        key = k.replace("-", "_")
        if key not in known or key in ("func", "command", "config"):
            raise ConfigError(f"{path}: unknown key {k!r}; known keys: {sorted(x for x in known if x not in ('func', 'command', 'config', 'verbose', 'quiet'))}")
        merged[key] = v
    merged.update({k: v for k, v in cli.items() if v is not None})
    return merged


def read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read run config {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"run config {path} is not valid TOML: {e}") from e


def parse_dtype(name):
    if name is None:
        return None
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


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
