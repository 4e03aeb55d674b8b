"""Pipeline parts for an embedded model (vdrt-tiny): denoiser, its own text encoder, pixel codec, defaults.

The card (`vdrt/weights/<name>.json`) says how the model was trained: its sizes, sampler and
guidance. Sizes other than the trained ones are refused, since nothing shows the model works there.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def parts_for_embedded(name: str, dtype=None, device=None, cuda_graphs: bool = False):
    from vdrt import embedded
    from vdrt.assemble import Parts, _engine
    from vdrt.codecs import PixelCodec

    state = embedded.verified_weights(name)
    den = embedded.load(name, state).to(device=device, dtype=dtype or torch.float32)
    text, defaults = text_and_defaults(name, device, state)
    return Parts(_engine(den, cuda_graphs), PixelCodec(den.config.patch_size[-1]), text, defaults, name=name)


def text_and_defaults(name: str, device=None, state: dict | None = None):
    """The embedded model's own text conditioner and its trained defaults (also for engines built from it)."""
    from vdrt import embedded
    from vdrt.assemble import Defaults

    card = embedded.card(name)
    state = embedded.verified_weights(name) if state is None else state
    d = dict(card["defaults"])
    d["sampler_timesteps"] = tuple(d.get("sampler_timesteps") or ())
    defaults = Defaults(**d, trained_size=(d["num_frames"], d["height"], d["width"]))
    return _text_conditioner(card, embedded.part(state, "text"), device), defaults


def _text_conditioner(card: dict, state: dict, device):
    from vdrt.text.tiny_encoder import TinyTextConditioner, TinyTextConfig, TinyTextEncoder
    from vdrt.text.word_tokenizer import WordTokenizer

    t = card["text"]
    tok = WordTokenizer(t["vocab"], max_len=t["max_len"])
    enc = TinyTextEncoder(TinyTextConfig(vocab_size=tok.vocab_size, max_len=t["max_len"], dim=t["dim"],
                                         layers=t["layers"], heads=t["heads"]))
    enc.load_state_dict(state, strict=True)
    return TinyTextConditioner(tok, enc.eval().requires_grad_(False).to(device))
