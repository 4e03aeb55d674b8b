"""Models shipped inside the package (`vdrt/weights/<name>.json` + `<name>.safetensors`).

The JSON card holds the model config, the sha256 of the weights file, and what the
pipeline needs beside the denoiser (tokenizer vocabulary, text encoder config, default
sampler and sizes). The hash is checked before the weights are read.
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from vdrt.errors import CheckpointError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"


def weight_dirs() -> list[Path]:
    """Where embedded cards live: $VDRT_WEIGHTS_DIR (os.pathsep-separated) first, then the package."""
    extra = [Path(p) for p in os.environ.get("VDRT_WEIGHTS_DIR", "").split(os.pathsep) if p]
    return extra + [WEIGHTS_DIR]


def card_path(name: str) -> Path | None:
    for d in weight_dirs():
        if (d / f"{name}.json").is_file():
            return d / f"{name}.json"
    return None


def names() -> list[str]:
    return sorted({p.stem for d in weight_dirs() for p in d.glob("*.json")})


@lru_cache(maxsize=None)
def card(name: str) -> dict:
    path = card_path(name)
    if path is None:
        raise CheckpointError(f"no embedded model {name!r}; embedded models: {names()}")
    try:
        return {**json.loads(path.read_text()), "_dir": str(path.parent)}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"shipped model card {path} is unreadable ({e}); reinstall vdrt") from e


def verified_weights(name: str) -> dict:
    """The embedded model's state dict, after checking its sha256 against the card."""
    from vdrt.checkpoint import read_safetensors
    from vdrt.fsutil import sha256_file

    c = card(name)
    path = Path(c["_dir"]) / c["weights"]
    if not path.is_file():
        raise CheckpointError(f"shipped weights {path} are missing; reinstall vdrt")
    digest = sha256_file(path)
    if digest != c["sha256"]:
        raise CheckpointError(f"shipped weights {path} are corrupted (sha256 {digest[:12]}..., expected "
                              f"{c['sha256'][:12]}...); reinstall vdrt")
    return {k: v.float() for k, v in read_safetensors(path).items()}


def part(state: dict, prefix: str) -> dict:
    """The entries of `state` under `prefix.`, with the prefix removed."""
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def load(name: str, state: dict | None = None):
    """The embedded denoiser `name` with its trained weights (eval mode, fp32, CPU)."""
    from vdrt import models
    from vdrt.checkpoint import check_state_dict

    config = models.config_from_dict(card(name)["config"])
    state = verified_weights(name) if state is None else state
    model = models.build_model(config)
    check_state_dict(model, part(state, "denoiser"), f"embedded model {name}")
    model.load_state_dict(part(state, "denoiser"), strict=True)
    log.info("model %s: embedded trained weights", name)
    return model.eval().requires_grad_(False)
