"""Model cards: models shipped inside the package (`vdrt/weights/<name>.json` + `<name>.safetensors`).

A card (`Card`) holds the model config, the sha256 of the weights file, and what the pipeline
needs beside the denoiser: the tokenizer vocabulary and text-encoder config, and the default
sampler and sizes the model was trained at. The hash is checked before the weights are read.
`Card.read(path)` reads any card (e.g. one the training scripts wrote into a folder); `card(name)`
finds an embedded one in $VDRT_WEIGHTS_DIR (os.pathsep-separated) first, then the package.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from vdrt.errors import CheckpointError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
SECTIONS = ("name", "weights", "sha256", "config", "text", "defaults")


@dataclasses.dataclass(frozen=True)
class Card:
    """One model card; `dir` is the folder holding it and its weights."""

    name: str
    weights: str  # file name of the safetensors beside the card
    sha256: str
    config: dict  # the denoiser's model config (vdrt.models.config_from_dict)
    text: dict  # the word tokenizer + tiny text encoder config
    defaults: dict  # num_frames, height, width, num_steps, sampler, sampler_timesteps, guidance, shift, fps
    dir: Path
    trained: dict = dataclasses.field(default_factory=dict)  # how it was trained (script, command, data, loss)
    trained_range: dict | None = None  # {"frames": [lo, hi], "side": [lo, hi], "multiple": m}; None: defaults only
    cond_layout: str | None = None  # the conditioning channels' layout (vdrt.pipeline.native.LAYOUTS)

    @classmethod
    def read(cls, path) -> "Card":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"model card {path} is unreadable ({e}); reinstall vdrt or re-run the script "
                                  "that wrote it") from e
        missing = [k for k in SECTIONS if not isinstance(d, dict) or k not in d]
        if missing:
            raise CheckpointError(f"model card {path} lacks {missing}; it was not written by vdrt.export.tiny")
        return cls(**{k: d[k] for k in SECTIONS}, dir=path.parent, trained=d.get("trained", {}),
                   trained_range=d.get("trained_range"), cond_layout=d.get("cond_layout"))

    @property
    def weights_path(self) -> Path:
        return self.dir / self.weights

    def state(self) -> dict:
        """The card's weights as fp32 tensors, after checking their sha256 against the card."""
        from vdrt.checkpoint import read_safetensors
        from vdrt.fsutil import sha256_file

        path = self.weights_path
        if not path.is_file():
            raise CheckpointError(f"weights {path} of model card {self.name!r} are missing; reinstall vdrt")
        digest = sha256_file(path)
        if digest != self.sha256:
            raise CheckpointError(f"weights {path} are corrupted (sha256 {digest[:12]}..., expected "
                                  f"{self.sha256[:12]}...); reinstall vdrt")
        return {k: v.float() for k, v in read_safetensors(path).items()}

    def denoiser(self, state: dict | None = None):
        """The card's denoiser with its weights (eval mode, fp32, CPU)."""
        from vdrt import models
        from vdrt.checkpoint import check_state_dict

        state = self.state() if state is None else state
        model = models.build_model(models.config_from_dict(self.config))
        check_state_dict(model, part(state, "denoiser"), f"model card {self.name}")
        model.load_state_dict(part(state, "denoiser"), strict=True)
        log.info("model %s: trained weights from its card", self.name)
        return model.eval().requires_grad_(False)

    def text_encoder(self, state: dict | None = None, device=None):
        """The card's own text conditioner (word tokenizer + tiny encoder) with its weights."""
        from vdrt.text.tiny_encoder import TinyTextConditioner, TinyTextConfig, TinyTextEncoder
        from vdrt.text.word_tokenizer import WordTokenizer

        t, state = self.text, self.state() if state is None else state
        tok = WordTokenizer(t["vocab"], max_len=t["max_len"])
        enc = TinyTextEncoder(TinyTextConfig(vocab_size=tok.vocab_size, max_len=t["max_len"], dim=t["dim"],
                                             layers=t["layers"], heads=t["heads"]))
        enc.load_state_dict(part(state, "text"), strict=True)
        return TinyTextConditioner(tok, enc.eval().requires_grad_(False).to(device))


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
def card(name: str) -> Card:
    path = card_path(name)
    if path is None:
        raise CheckpointError(f"no embedded model {name!r}; embedded models: {names()}")
    return Card.read(path)


def verified_weights(name: str) -> dict:
    """The embedded model's state dict, after checking its sha256 against the card."""
    return card(name).state()


def part(state: dict, prefix: str) -> dict:
    """The entries of `state` under `prefix.`, with the prefix removed."""
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def load(name: str, state: dict | None = None):
    """The embedded denoiser `name` with its trained weights (eval mode, fp32, CPU)."""
    return card(name).denoiser(state)
