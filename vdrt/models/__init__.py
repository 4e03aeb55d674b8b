"""vdrt models: every denoiser is `den(latents, timestep, context, **cond) -> prediction`.

Families register here: `wan` (Wan2.1 DiT) and `factorized` (Latte-style spatio-temporal DiT).
"""
from __future__ import annotations

from typing import Any

from vdrt.errors import ConfigError

_FAMILIES: dict[str, tuple[type, type]] = {}


def register_family(config_cls: type, model_cls: type) -> None:
    _FAMILIES[config_cls.family] = (config_cls, model_cls)


def _load_families() -> None:
    if _FAMILIES:
        return
    from vdrt.models import factorized, wan

    register_family(wan.WanConfig, wan.WanModel)
    register_family(factorized.FactorizedConfig, factorized.FactorizedModel)


def families() -> dict[str, tuple[type, type]]:
    _load_families()
    return dict(_FAMILIES)


def preset_names() -> list[str]:
    """Every named model preset, across families."""
    _load_families()
    return sorted(n for cfg, _ in _FAMILIES.values() for n in cfg.PRESETS)


def config_from_name(name: str):
    _load_families()
    for cfg, _ in _FAMILIES.values():
        if name in cfg.PRESETS:
            return cfg.from_name(name)
    raise ConfigError(f"unknown model preset {name!r}; known presets: {', '.join(preset_names())}")


def config_from_dict(d: dict[str, Any]):
    _load_families()
    family = d.get("family")
    if family not in _FAMILIES:
        raise ConfigError(f"config names unknown model family {family!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[family][0].from_dict(d)


def build_model(config):
    """A freshly initialised module for `config` (random weights)."""
    _load_families()
    return _FAMILIES[config.family][1](config)
