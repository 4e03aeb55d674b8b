"""LoRA adapters on a loaded model: fused into the weights, or kept apart and hot-swappable.

Every adapter is either
- fused: all its changes are added into the parameters (zero run-time cost); or
- unfused: its low-rank changes on `Linear` weights run beside the layer, through a forward hook that
  adds `coef * up(down(x))` to the layer's output (the layer itself still goes through `vdrt.ops.linear`);
  its other changes (bias deltas, `.diff` deltas, norms, the patch embedding) are small and are added into
  the parameters. Rescaling, disabling or removing it touches only those, so the base is never reloaded.

The weights always equal base + sum over adapters of `baked * delta` (each delta computed in fp32 from the
stored LoRA tensors and added with one rounding to the parameter's dtype), so removing an adapter
subtracts exactly what was added: fp32 weights come back within fp32 rounding (bf16 weights within bf16's).
State lives on the model (`model._vdrt_lora`, an ordered {name: Adapter}); nothing enters its state_dict.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from vdrt.errors import ConfigError
from vdrt.ops import QuantizedActivation
from vdrt.models.lora.formats import Diff, LoraWeights, LowRank

log = logging.getLogger(__name__)

STATE_ATTR = "_vdrt_lora"
SLOT_ATTR = "vdrt_lora"  # the LoraSlot submodule an unfused adapter adds to a Linear


@dataclasses.dataclass
class Adapter:
    """One loaded LoRA on one model."""

    name: str
    weights: LoraWeights
    sha256: str | None
    scale: float
    enabled: bool = True
    fused: bool = False
    baked: float = 0.0  # the coefficient its in-weight changes are currently added with

    @property
    def coef(self) -> float:
        return self.scale if self.enabled else 0.0

    def in_weights(self, model: nn.Module) -> list:
        """The changes that live in the parameters: all when fused, else those no hook carries."""
        return [c for c in self.weights.changes if self.fused or not _hookable(model, c)]


def check_scale(scale, what: str = "LoRA scale") -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ConfigError(f"{what} must be a finite number, got {scale!r}")
    return float(scale)


def adapters(model: nn.Module) -> dict[str, Adapter]:
    """The model's adapters by name, in load order (the live dict: do not edit it directly)."""
    if STATE_ATTR not in model.__dict__:
        model.__dict__[STATE_ATTR] = {}
    return model.__dict__[STATE_ATTR]


def get(model: nn.Module, name: str) -> Adapter:
    table = adapters(model)
    if name not in table:
        raise ConfigError(f"no LoRA adapter named {name!r} on this model; loaded: {sorted(table) or 'none'}")
    return table[name]


def attach(model: nn.Module, weights: LoraWeights, name: str, scale: float, fuse: bool, sha256=None) -> Adapter:
    """Add a resolved LoRA as adapter `name` (fused or not) at `scale`."""
    table = adapters(model)
    if name in table:
        raise ConfigError(f"a LoRA adapter named {name!r} is already loaded; unload it or pick another adapter_name")
    params = dict(model.named_parameters())
    changes = tuple(dataclasses.replace(c, **_on_device(c, params[c.param])) for c in weights.changes)
    a = Adapter(name, dataclasses.replace(weights, changes=changes), sha256, check_scale(scale), fused=fuse)
    table[name] = a
    sync(model, a)
    return a


def _on_device(c, param: torch.Tensor) -> dict:
    if isinstance(c, LowRank):
        return {"down": c.down.to(param.device), "up": c.up.to(param.device)}
    return {"diff": c.diff.to(param.device)}


def sync(model: nn.Module, a: Adapter, fused: bool | None = None) -> None:
    """Bring the weights and hooks in line with `a`'s scale / enabled flag (and fused state, if given)."""
    if fused is not None and fused != a.fused:
        _bake(model, a.in_weights(model), -a.baked)
        a.baked = 0.0
        a.fused = fused
    _set_hooks(model, a, 0.0 if a.fused else a.coef)
    if a.coef != a.baked:
        _bake(model, a.in_weights(model), a.coef - a.baked)
        a.baked = a.coef


def remove(model: nn.Module, name: str) -> None:
    """Take adapter `name` out entirely: weights back to what they were without it, hooks gone."""
    a = get(model, name)
    _bake(model, a.in_weights(model), -a.baked)
    _set_hooks(model, a, None)
    del adapters(model)[name]


# ---------------------------------------------------------------- in-weight changes

@torch.no_grad()
def _bake(model: nn.Module, changes, coef: float) -> None:
    """param += coef * delta, in fp32, rounded once to the parameter's dtype."""
    if coef == 0.0 or not changes:
        return
    params = dict(model.named_parameters())
    for c in changes:
        p = params[c.param]
        p.copy_((p.float() + coef * c.delta(p.shape, p.device)).to(p.dtype))


# ---------------------------------------------------------------- hooks

def _hookable(model: nn.Module, c) -> bool:
    """A low-rank change of a Linear's weight runs beside the layer; anything else goes into the weights."""
    if not isinstance(c, LowRank) or not c.param.endswith(".weight"):
        return False
    return isinstance(model.get_submodule(c.param.rsplit(".", 1)[0]), nn.Linear)


def _set_hooks(model: nn.Module, a: Adapter, coef: float | None) -> None:
    """Give `a`'s hookable changes coefficient `coef` (0 = present but idle); None removes them."""
    for c in a.weights.changes:
        if not _hookable(model, c):
            continue
        layer = model.get_submodule(c.param.rsplit(".", 1)[0])
        slot = getattr(layer, SLOT_ATTR, None)
        if coef is None or coef == 0.0:
            if slot is not None:
                slot.drop(a.name)
                _maybe_unhook(layer, slot)
            continue
        if slot is None:
            slot = _hook(layer)
        slot.put(a.name, c.down, c.up, coef * c.rank_scale, layer.weight.dtype)


def _hook(layer: nn.Linear) -> "LoraSlot":
    slot = LoraSlot()
    layer.add_module(SLOT_ATTR, slot)
    slot.hook_id = layer.register_forward_hook(_add_lora).id
    return slot


def _maybe_unhook(layer: nn.Linear, slot: "LoraSlot") -> None:
    if not slot.coefs:  # by id, not by handle: a deep-copied model has its own hook dict with the same ids
        layer._forward_hooks.pop(slot.hook_id, None)
        delattr(layer, SLOT_ATTR)


def _add_lora(layer: nn.Linear, args, out: torch.Tensor) -> torch.Tensor:
    return out + getattr(layer, SLOT_ATTR)(args[0]).to(out.dtype)


class LoraSlot(nn.Module):
    """The unfused low-rank adapters of one Linear: (..., in) -> (..., out) sum of coef * up(down(x)).

    down/up are non-persistent buffers (they follow .to() but stay out of the state_dict); the
    coefficients are Python floats, so an exported graph bakes in the scales it was traced with.
    """

    def __init__(self):
        super().__init__()
        self.coefs: dict[str, float] = {}
        self.hook_id: int | None = None

    def put(self, name: str, down: torch.Tensor, up: torch.Tensor, coef: float, dtype: torch.dtype) -> None:
        key = _buffer_key(name)
        if name not in self.coefs:
            self.register_buffer(f"down_{key}", down.to(dtype), persistent=False)
            self.register_buffer(f"up_{key}", up.to(dtype), persistent=False)
        self.coefs[name] = coef

    def drop(self, name: str) -> None:
        if self.coefs.pop(name, None) is not None:
            key = _buffer_key(name)
            delattr(self, f"down_{key}")
            delattr(self, f"up_{key}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, QuantizedActivation):  # a producer-fed fp8 input (vdrt/models/fp8.py): x ~ codes * scale
            x = x.dequantize()
        out = None
        for name, coef in self.coefs.items():
            key = _buffer_key(name)
            down, up = getattr(self, f"down_{key}"), getattr(self, f"up_{key}")
            y = F.linear(F.linear(x.to(down.dtype), down), up) * coef  # (..., in) -> (..., r) -> (..., out)
            out = y if out is None else out + y
        return out


def _buffer_key(name: str) -> str:
    """A buffer-name-safe form of an adapter name (injective: every non-alnum char is hex-escaped)."""
    return "".join(ch if ch.isalnum() else f"_{ord(ch):x}_" for ch in name)
