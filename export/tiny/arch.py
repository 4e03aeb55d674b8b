"""The tiny models' architectures: a small Wan2.1 DiT and a small factorized (Latte-style) DiT, pixel space.

Both take the same inputs: RGB in [-1, 1] (3 channels), 8x8 patches (1088 tokens for 17 x 64 x 64),
the 8 native conditioning channels of `vdrt.export.tiny.modes` (cond_channels = 8), and the
context of the tiny text encoder (16 tokens of 128). Cards (`<name>.json`) carry the `config`
(the family's `to_dict`) and `text` sections written here; sizes are bounded by what the models
were trained at (`TRAINED_RANGE`, also written into the card's `defaults`).

| arch | card name | denoiser | parameters |
| --- | --- | --- | --- |
| wan | vdrt-tiny-wan-teacher / vdrt-tiny-wan | WanConfig dim 256, 4 heads, 4 layers, ffn 768 | 4.55M + 0.40M text |
| factorized | vdrt-tiny-factorized-teacher / -factorized | dim 192, 3 heads, 3 layer pairs | 3.66M + 0.40M text |
"""
from __future__ import annotations

from vdrt.errors import ConfigError
from vdrt.export.tiny.modes import COND_CHANNELS

TEXT_CONFIG = dict(max_len=16, dim=128, layers=2, heads=4)
_COMMON = dict(in_channels=3, out_channels=3, text_dim=128, patch_size=(1, 8, 8), cond_channels=COND_CHANNELS,
               text_len=16)
ARCHS = {
    "wan": dict(_COMMON, family="wan", dim=256, ffn_dim=768, num_heads=4, num_layers=4, rope_max_seq_len=64),
    "factorized": dict(_COMMON, family="factorized", dim=192, num_heads=3, num_layers=3, max_frames=33,
                       sample_size=64),
}
NAMES = {"wan": "vdrt-tiny-wan", "factorized": "vdrt-tiny-factorized"}
TRAINED_RANGE = {"frames": (9, 33), "side": (64, 128), "multiple": 8}


def check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch {arch!r}; use one of {tuple(ARCHS)}")


def sections(arch: str, config_overrides: dict | None = None, text_overrides: dict | None = None) -> tuple[dict, dict]:
    """The card's `config` (the family's to_dict) and `text` sections, with overrides applied."""
    from vdrt import models
    from vdrt.text.vocab import VOCAB

    check_arch(arch)
    text = {"vocab": list(VOCAB), **TEXT_CONFIG, **(text_overrides or {})}
    over = dict(config_overrides or {})
    over.setdefault("text_dim", text["dim"])
    over.setdefault("text_len", text["max_len"])
    return models.config_from_dict({**ARCHS[arch], **over}).to_dict(), text


def teacher_name(arch: str) -> str:
    return NAMES[arch] + "-teacher"


def student_name(arch: str) -> str:
    return NAMES[arch]
