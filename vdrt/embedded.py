"""Models shipped inside the package (`vdrt/weights/<name>.json` + `<name>.safetensors`).

The JSON card holds the model config, the sha256 of the weights file, and what the
pipeline needs beside the denoiser (tokenizer vocabulary, text encoder config, default
sampler and sizes). The hash is checked before the weights are read.
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from vdrt.errors import CheckpointError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"


def names() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


@lru_cache(maxsize=None)
def card(name: str) -> dict:
    path = WEIGHTS_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"shipped model card {path} is unreadable ({e}); reinstall vdrt") from e


def verified_weights(name: str) -> dict:
    """The embedded model's state dict, after checking its sha256 against the card."""
    from vdrt.checkpoint import read_safetensors
    from vdrt.fsutil import sha256_file

    c = card(name)
    path = WEIGHTS_DIR / c["weights"]
    if not path.is_file():
        raise CheckpointError(f"shipped weights {path} are missing; reinstall vdrt")
    digest = sha256_file(path)
    if digest != c["sha256"]:
        raise CheckpointError(f"shipped weights {path} are corrupted (sha256 {digest[:12]}..., expected "
                              f"{c['sha256'][:12]}...); reinstall vdrt")
    return read_safetensors(path)


def load(name: str):
    """The embedded denoiser `name` with its trained weights."""
    from vdrt import models

    config = models.config_from_dict(card(name)["config"])
    state = verified_weights(name)
    model = models.build_model(config)
    denoiser_state = {k[len("denoiser."):]: v for k, v in state.items() if k.startswith("denoiser.")}
    model.load_state_dict(denoiser_state, strict=True)
    log.info("model %s: embedded trained weights", name)
    return model
