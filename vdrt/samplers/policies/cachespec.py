"""`--cache NAME[:THRESHOLD]`: the step-cache policies by name, parsed and checked before anything loads.

    spec = parse("teacache:0.2")            # CacheSpec("teacache", 0.2)
    pipe.hooks.append(spec.build(calibration))   # the model's "cache_calibration" dict, or None

Names: teacache, magcache, fbcache (`none` or an empty text: no policy). Without a threshold the
policy's default is used (DEFAULTS). Thresholds lie in [0, 1]; 0 never skips.
"""
from __future__ import annotations

from dataclasses import dataclass

from vdrt.errors import ConfigError

DEFAULTS = {"teacache": 0.1, "magcache": 0.1, "fbcache": 0.1}
NEEDS_CALIBRATION = ("teacache", "magcache")  # fbcache's threshold is its own signal
EXAMPLE = "teacache:0.2, magcache:0.1 or fbcache:0.1"


@dataclass(frozen=True)
class CacheSpec:
    name: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.name}:{self.threshold:g}"

    def build(self, calibration: dict | None = None):
        """The policy (a fresh `CachePolicy` step hook) with the model's calibration."""
        return policy_class(self.name)(self.threshold, calibration=calibration)


def policy_class(name: str):
    from vdrt.samplers.policies.fbcache import FirstBlockCache
    from vdrt.samplers.policies.magcache import MagCache
    from vdrt.samplers.policies.teacache import TeaCache

    return {"teacache": TeaCache, "magcache": MagCache, "fbcache": FirstBlockCache}[name]


def parse(text) -> CacheSpec | None:
    """'teacache:0.2' -> CacheSpec; None, '' or 'none' -> None; anything else is refused with the fix."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    name, _, value = str(text).strip().partition(":")
    name = name.strip().lower()
    if name not in DEFAULTS:
        raise ConfigError(f"--cache {text!r}: unknown policy {name!r}; choose teacache, magcache or fbcache "
                          f"with a threshold, e.g. {EXAMPLE}")
    try:
        threshold = float(value) if value.strip() else DEFAULTS[name]
    except ValueError:
        raise ConfigError(f"--cache {text!r}: the threshold must be a number in [0, 1], e.g. {EXAMPLE}") from None
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ConfigError(f"--cache {text!r}: threshold {value} is outside [0, 1] (0 never skips; typical 0.05-0.3)")
    return CacheSpec(name, threshold)


def parse_list(text) -> list[CacheSpec | None]:
    """'none,teacache:0.1,teacache:0.2' -> [None, CacheSpec, CacheSpec] (for `vdrt bench --cache`)."""
    return [parse(t) for t in str(text).split(",")] if text else [None]
