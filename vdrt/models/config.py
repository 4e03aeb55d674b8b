"""Frozen config dataclasses with named presets, saved as JSON beside artifacts."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

from vdrt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model config. Subclasses set `family` and fill `PRESETS`.

    Every config has at least in_channels, out_channels, text_dim and patch_size
    (a (pt, ph, pw) tuple), plus cond_channels: extra channels concatenated to the
    latents (masks and known frames for conditioning; 0 = none).
    """

    family: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_name(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown {cls.family} preset {name!r}; known: {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - {"family"})
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown config keys {unknown}; known keys: {sorted(names)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)
