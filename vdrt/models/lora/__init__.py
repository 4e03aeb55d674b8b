"""LoRA loading for vdrt denoisers: fuse into the weights, or keep adapters apart and swap them per request.

    from vdrt.models import lora
    lora.load_lora(den, "lightx2v_4step.safetensors", scale=1.0, fuse=True)      # zero run-time cost
    lora.load_lora(den, "style.safetensors", adapter_name="style", scale=0.8)    # unfused: hot-swappable
    lora.set_lora_scale(den, "style", 0.5); lora.disable_lora(den, "style"); lora.unload_lora(den, "style")

Formats (diffusers/PEFT, original Wan/ComfyUI, kohya) are read by `formats`; adapters live in `apply`.
The CLI/Pipeline wiring calls `parse_lora_flag` (`--lora PATH[:SCALE]`), `check_lora_arg` (before any model
is loaded), `apply_loras`, and `lora_manifest_entries` (what an engine manifest records). See docs/lora.md.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Mapping

from torch import nn

from vdrt.checkpoint import PICKLE_SUFFIXES
from vdrt.errors import ConfigError
from vdrt.models.lora import apply
from vdrt.models.lora.apply import Adapter, check_scale
from vdrt.models.lora.files import check_lora_file, lora_path, read_lora_file
from vdrt.models.lora.formats import FORMATS, LoraWeights, resolve

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES

__all__ = [
    "load_lora", "set_lora_scale", "enable_lora", "disable_lora", "fuse_lora", "unfuse_lora", "unload_lora",
    "list_loras", "lora_manifest_entries", "check_engine_loras", "parse_lora_flag", "check_lora_arg",
    "apply_loras", "Adapter", "LoraWeights", "FORMATS",
]


def load_lora(model: nn.Module, source, scale: float = 1.0, adapter_name: str | None = None,
              fuse: bool = False, trust_pickle: bool = False) -> str:
    """Load a LoRA (a file path, or a state dict) onto `model` as an adapter; returns its name.

    fuse=True adds it into the weights (zero run-time cost; `unfuse_lora` takes it out again);
    fuse=False keeps it apart: rescale, disable, swap or unload it without reloading the base.
    Nothing on the model changes unless every key of the LoRA maps onto a parameter of the right shape.
    """
    return _attach(model, _prepare(model, source, scale, adapter_name, trust_pickle), fuse)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    name: str
    weights: LoraWeights
    scale: float
    sha256: str | None


def _prepare(model: nn.Module, source, scale, adapter_name, trust_pickle: bool, taken=()) -> _Prepared:
    """Read and check a LoRA against `model` without changing the model."""
    scale = check_scale(scale)
    state, peft, label, sha = _read(source, trust_pickle)
    name = adapter_name if adapter_name is not None else _free_name(model, label, taken)
    _check_name(name)
    return _Prepared(name, resolve(state, model, label, peft), scale, sha)


def _attach(model: nn.Module, p: _Prepared, fuse: bool) -> str:
    apply.attach(model, p.weights, p.name, p.scale, fuse, p.sha256)
    log.info("LoRA %s from %s (scale %g, %s): applied %s", p.name, p.weights.source, p.scale,
             "fused" if fuse else "unfused", p.weights.summary())
    return p.name


def _read(source, trust_pickle: bool):
    """(tensors, PEFT header config or None, a label for messages, sha256 of the file or None)."""
    if isinstance(source, Mapping):
        return dict(source), None, "<state dict>", None
    from vdrt.fsutil import sha256_file

    path = lora_path(source)
    state, peft = read_lora_file(path, trust_pickle)
    return state, peft, str(path), sha256_file(path)


def _free_name(model: nn.Module, label: str, also_taken=()) -> str:
    base = Path(label).stem if not label.startswith("<") else "adapter"
    taken, name, k = set(apply.adapters(model)) | set(also_taken), base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"adapter_name must be a non-empty string, got {name!r}")


def set_lora_scale(model: nn.Module, name: str, scale: float) -> None:
    """Set adapter `name`'s scale (fused adapters too: their delta is re-added at the new scale)."""
    a = apply.get(model, name)
    a.scale = check_scale(scale)
    apply.sync(model, a)


def enable_lora(model: nn.Module, name: str) -> None:
    a = apply.get(model, name)
    a.enabled = True
    apply.sync(model, a)


def disable_lora(model: nn.Module, name: str) -> None:
    """Switch adapter `name` off (the model computes as without it) but keep it loaded."""
    a = apply.get(model, name)
    a.enabled = False
    apply.sync(model, a)


def fuse_lora(model: nn.Module, name: str | None = None) -> None:
    """Fuse adapter `name` (None: every adapter) into the weights."""
    for a in _selected(model, name):
        apply.sync(model, a, fused=True)


def unfuse_lora(model: nn.Module, name: str | None = None) -> None:
    """Take adapter `name` (None: every adapter) back out of the weights, keeping it as an unfused adapter."""
    for a in _selected(model, name):
        apply.sync(model, a, fused=False)


def unload_lora(model: nn.Module, name: str | None = None) -> None:
    """Remove adapter `name` (None: every adapter); the weights return to the base."""
    for a in _selected(model, name)[::-1]:
        apply.remove(model, a.name)


def _selected(model: nn.Module, name: str | None) -> list[Adapter]:
    return list(apply.adapters(model).values()) if name is None else [apply.get(model, name)]


def list_loras(model: nn.Module) -> list[dict]:
    """One row per adapter: name, source, sha256, scale, enabled, fused, per-format counts."""
    return [dict(name=a.name, source=a.weights.source, sha256=a.sha256, scale=a.scale, enabled=a.enabled,
                 fused=a.fused, formats=a.weights.counts) for a in apply.adapters(model).values()]


def lora_manifest_entries(model: nn.Module) -> list[dict]:
    """What an engine built from `model` records per active LoRA: file name, sha256, scale, fused."""
    return [dict(name=a.name, file=Path(a.weights.source).name, sha256=a.sha256, scale=a.scale, fused=a.fused)
            for a in apply.adapters(model).values() if a.coef != 0.0]


def check_engine_loras(entries: list[dict], specs) -> None:
    """`vdrt run ENGINE --lora ...`: an engine's weights are baked, so the LoRAs asked for must be the ones it
    was built with (manifest `entries` from lora_manifest_entries: same files by sha256, same scales, in order)."""
    from vdrt.fsutil import sha256_file

    asked = [(sha256_file(lora_path(path)), check_scale(scale)) for path, scale in specs]
    built = [(e.get("sha256"), e.get("scale")) for e in entries]
    if asked != built:
        names = ", ".join(f"{e.get('file')}:{e.get('scale')}" for e in entries) or "none"
        raise ConfigError(f"this engine was built with LoRAs [{names}]; other LoRAs or scales need a rebuild "
                          "(vdrt build --lora PATH[:SCALE]), or an unfused adapter on the torch backend")


# ---------------------------------------------------------------- CLI / loader helpers

def parse_lora_flag(text: str) -> tuple[str, float]:
    """`--lora PATH[:SCALE]` -> (path, scale); scale 1.0 when not given. A colon followed by something that is
    not a number belongs to the path, unless the part before it ends in a LoRA suffix."""
    if not isinstance(text, str) or not text:
        raise ConfigError("--lora needs a path: --lora PATH[:SCALE], e.g. --lora style.safetensors:0.8")
    head, sep, tail = text.rpartition(":")
    if not sep or not head:
        return text, 1.0
    try:
        scale = float(tail)
    except ValueError:
        if head.lower().endswith(LORA_SUFFIXES):
            raise ConfigError(f"--lora {text}: the scale {tail!r} is not a number; use PATH[:SCALE], "
                              "e.g. style.safetensors:0.8") from None
        return text, 1.0
    return head, check_scale(scale, f"--lora {text}: the scale")  # (a ConfigError is a ValueError: outside the try)


def check_lora_arg(lora, trust_pickle: bool | None = None) -> list[tuple[str, float]]:
    """`lora=` of load_denoiser (paths or (path, scale) pairs) -> [(path, scale)], checked before any loading:
    each file exists and is a safetensors or a pickle (a pickle refused here when `trust_pickle` is False; None
    leaves that to the read), each scale is finite."""
    if lora is None:
        return []
    if isinstance(lora, (str, Path)) or (isinstance(lora, tuple) and len(lora) == 2 and _is_scale(lora[1])):
        lora = [lora]
    if not isinstance(lora, (list, tuple)):
        from vdrt.errors import InputTypeError

        raise InputTypeError(f"lora={lora!r} must be a path, a (path, scale) pair or a list of them, not a "
                             f"{type(lora).__name__}")
    specs = []
    for item in lora:
        path, scale = (item, 1.0) if isinstance(item, (str, Path)) else _pair(item)
        specs.append((str(check_lora_file(lora_path(path), trust_pickle)), check_scale(scale)))
    return specs


def _is_scale(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _pair(item) -> tuple:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ConfigError(f"lora entries are paths or (path, scale) pairs, got {item!r}")
    return item[0], item[1]


def apply_loras(model: nn.Module, specs, fuse: bool = True, trust_pickle: bool = False) -> list[str]:
    """Load each (path, scale) onto `model` in order; all are read and checked before any is applied."""
    prepared: list[_Prepared] = []
    for path, scale in specs:
        prepared.append(_prepare(model, path, scale, None, trust_pickle, taken=[p.name for p in prepared]))
    return [_attach(model, p, fuse) for p in prepared]
