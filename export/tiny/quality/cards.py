"""Model cards of the tiny models (`<name>.json` + `<name>.safetensors`): read, check, build, load.

    card = read_card("runs/x/vdrt-tiny-wan-teacher.json")
    den, text = load_card_models(card)          # fp32, CPU, eval; the weights' sha256 is checked first
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from vdrt.errors import CheckpointError, ConfigError


def read_card(path) -> dict:
    """A model card (JSON), with `_dir` set to its folder."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"model card {path} is unreadable ({e}); re-run vdrt.export.tiny to write it") from e
    missing = [k for k in ("name", "weights", "sha256", "config", "text", "defaults") if k not in card]
    if missing:
        raise CheckpointError(f"model card {path} lacks {missing}; it was not written by vdrt.export.tiny")
    return {**card, "_dir": str(path.parent)}


def card_state(card: dict) -> dict:
    """The card's weights as fp32 tensors, after checking the sha256."""
    from vdrt.checkpoint import read_safetensors
    from vdrt.fsutil import sha256_file

    path = Path(card["_dir"]) / card["weights"]
    if not path.is_file():
        raise CheckpointError(f"weights {path} named by card {card['name']!r} are missing")
    if sha256_file(path) != card["sha256"]:
        raise CheckpointError(f"weights {path} do not match the sha256 in card {card['name']!r}; re-copy both files")
    return {k: v.float() for k, v in read_safetensors(path).items()}


def build_models(config: dict, text: dict, seed: int = 0):
    """Random-init (denoiser, TinyTextConditioner) for a card's `config` and `text` sections."""
    from vdrt import models
    from vdrt.text.tiny_encoder import TinyTextConditioner, TinyTextConfig, TinyTextEncoder
    from vdrt.text.word_tokenizer import WordTokenizer

    tok = WordTokenizer(text["vocab"], max_len=text["max_len"])
    tcfg = TinyTextConfig(tok.vocab_size, text["max_len"], text["dim"], text["layers"], text["heads"])
    cfg = models.config_from_dict(config)
    if cfg.text_dim != tcfg.dim:
        raise ConfigError(f"model text_dim {cfg.text_dim} != text encoder dim {tcfg.dim}")
    torch.manual_seed(seed)
    return models.build_model(cfg), TinyTextConditioner(tok, TinyTextEncoder(tcfg))


def load_card_models(card: dict, state: dict | None = None):
    """(denoiser, TinyTextConditioner) of a card with its weights (fp32, CPU, eval)."""
    from vdrt.checkpoint import check_state_dict
    from vdrt.embedded import part

    den, text = build_models(card["config"], card["text"])
    state = card_state(card) if state is None else state
    for module, prefix in ((den, "denoiser"), (text.encoder, "text")):
        check_state_dict(module, part(state, prefix), f"card {card['name']!r} ({prefix})")
        module.load_state_dict(part(state, prefix), strict=True)
    return den.eval().requires_grad_(False), text


def card_ema(out_dir, name: str) -> dict | None:
    """The (hash-checked) fp32 weights of card `<name>.json` in out_dir, or None when there is no card:
    the EMA a compact (bf16) training state resumes from."""
    path = Path(out_dir) / f"{name}.json"
    return card_state(read_card(path)) if path.is_file() else None
