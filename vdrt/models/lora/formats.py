"""LoRA files -> per-parameter changes in vdrt's parameter names, validated against a model.

Key formats in the wild (one file may mix them; the format is told per key):

- diffusers / PEFT: `transformer.blocks.0.attn1.to_q.lora_A.weight`, `lora_B.weight`, `lora_B.bias`
  (diffusers' module names);
- original / ComfyUI: `diffusion_model.blocks.0.self_attn.q.lora_down.weight`, `lora_up.weight`, `.alpha`,
  `.diff`, `.diff_b` (the model's own names: for Wan, the Wan2.1 repository's, which are vdrt's);
- kohya / musubi-tuner: `lora_unet_blocks_0_self_attn_q.lora_down.weight`, `.alpha` (vdrt's, dots as underscores).

Any key kind goes with any naming: `lora_A`/`lora_down` (down, (r, in)), `lora_B`/`lora_up` (up, (out, r)),
`alpha` (scalar; the low-rank delta is alpha / r * up @ down; missing = r, i.e. scale 1.0, as diffusers,
PEFT and ComfyUI do), `diff` (a full delta of the parameter), `diff_b` (a bias delta), `lora_B.bias` (PEFT's
`lora_bias`: a bias delta scaled like its pair, alpha / r).
Diffusers names are mapped through the family's converter (`wan_convert.rename_diffusers_key`).
Every key must map to a parameter of the model with the right shape, or the whole file is refused
before any weight changes.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import re
from typing import Mapping, NamedTuple

import torch

from vdrt.checkpoint import _few
from vdrt.errors import CheckpointError
from vdrt.models.lora.files import PeftMeta

log = logging.getLogger(__name__)

# Diffusers-name converters per model family: a module with rename_diffusers_key(key) -> vdrt key | None.
DIFFUSERS_RENAMERS = {"wan": "vdrt.models.wan_convert"}

_PREFIXES = (  # (prefix, naming it implies first; the other naming is tried when that one finds nothing)
    ("lora_unet_", "kohya"), ("model.diffusion_model.", "original"), ("diffusion_model.", "original"),
    ("base_model.model.", "diffusers"), ("transformer.", "diffusers"),
)
_KIND = re.compile(r"(.+?)\.(lora_A\.weight|lora_down\.weight|lora_B\.weight|lora_up\.weight|lora_B\.bias"
                   r"|alpha|diff_b|diff)")
_KINDS = {"lora_A.weight": "down", "lora_down.weight": "down", "lora_B.weight": "up", "lora_up.weight": "up",
          "lora_B.bias": "up_bias", "alpha": "alpha", "diff": "diff", "diff_b": "diff_b"}
FORMATS = ("diffusers", "original", "kohya")
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclasses.dataclass
class LowRank:
    """param += coef * rank_scale * up @ down; down (r, in, ...), up (out, r, 1, ...)."""

    param: str
    down: torch.Tensor
    up: torch.Tensor
    rank_scale: float  # alpha / r
    fmt: str

    def delta(self, shape, device) -> torch.Tensor:
        """The fp32 delta at coef 1, shaped like the parameter."""
        up, down = self.up.to(device).flatten(1).float(), self.down.to(device).flatten(1).float()
        return (up @ down).reshape(shape) * self.rank_scale


@dataclasses.dataclass
class Diff:
    """param += coef * factor * diff (a full weight delta, `.diff`; a bias delta, `.diff_b` / `lora_B.bias`)."""

    param: str
    diff: torch.Tensor
    fmt: str
    factor: float = 1.0  # alpha / r for PEFT's lora_B.bias, which PEFT scales with its pair

    def delta(self, shape, device) -> torch.Tensor:
        return self.diff.to(device).float().reshape(shape) * self.factor


@dataclasses.dataclass(frozen=True)
class LoraWeights:
    """A LoRA file resolved against one model: its changes in vdrt names, and what they came from."""

    source: str
    changes: tuple  # of LowRank | Diff
    counts: dict  # {format: {"low-rank": n, "diff": n, "diff_b": n}}

    def summary(self) -> str:
        return "; ".join(f"{fmt}: " + ", ".join(f"{n} {k}" for k, n in c.items() if n)
                         for fmt, c in self.counts.items())


# ---------------------------------------------------------------- resolving names

@dataclasses.dataclass
class _Names:
    """The model's parameters, and the ways a LoRA key's module path can name them."""

    params: dict  # name -> Parameter
    kohya: dict  # underscored module/param path -> dotted path (None when two collide)
    rename: object  # diffusers key -> vdrt key | None, or None for families without a converter

    @classmethod
    def of(cls, model: torch.nn.Module) -> "_Names":
        params = dict(model.named_parameters())
        kohya: dict = {}
        for name in params:
            for path in (name, name.rsplit(".", 1)[0]):
                flat = path.replace(".", "_")
                kohya[flat] = path if kohya.get(flat, path) == path else None
        family = getattr(getattr(model, "config", None), "family", None)
        mod = DIFFUSERS_RENAMERS.get(family)
        rename = importlib.import_module(mod).rename_diffusers_key if mod else None
        return cls(params, kohya, rename)

    def param(self, path: str, naming: str | None, kind: str) -> tuple[str, str] | None:
        """(vdrt parameter, naming) for module path `path` and key kind, or None when nothing matches.

        A `transformer.` / `base_model.model.` key tries diffusers names first, any other key the model's own.
        """
        if naming == "kohya":
            path = self.kohya.get(path) or path
        which = "bias" if kind == "diff_b" else "weight"
        names = [f"{path}.{which}"] + ([path] if kind == "diff" else [])
        own = next((n for n in names if n in self.params), None)
        theirs = None
        if self.rename is not None and naming != "kohya":
            theirs = next((t for t in map(self.rename, names) if t in self.params), None)
        if naming == "diffusers" and theirs:
            return theirs, "diffusers"
        if own:
            return own, "kohya" if naming == "kohya" else "original"
        return (theirs, "diffusers") if theirs else None


def _split(key: str) -> tuple[str, str | None, str] | None:
    """key -> (module path, naming implied by its prefix, kind), or None for a key kind vdrt does not read."""
    naming = None
    for prefix, implied in _PREFIXES:
        if key.startswith(prefix):
            key, naming = key[len(prefix):], implied
            break
    m = _KIND.fullmatch(key)
    return (m[1], naming, _KINDS[m[2]]) if m else None


# ---------------------------------------------------------------- grouping and checks

class _Part(NamedTuple):
    key: str  # the key in the file
    tensor: torch.Tensor
    fmt: str  # the naming it resolved through: diffusers, original or kohya
    path: str  # its module path, prefix stripped (what PEFT's alpha_pattern matches)


@dataclasses.dataclass(frozen=True)
class _Ctx:
    source: str
    peft: PeftMeta | None


def resolve(state: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str,
            peft: PeftMeta | None = None) -> LoraWeights:
    """Map every key of a LoRA state dict onto `model`'s parameters and check shapes; raise on anything off.

    `peft`: the PEFT config of a diffusers-saved file (its alphas, when the file has no `.alpha` keys).
    """
    if not state:
        raise CheckpointError(f"LoRA {source} is empty")
    names, ctx = _Names.of(model), _Ctx(source, peft)
    groups, unmatched, unknown = _group(state, names, source)
    family = getattr(getattr(model, "config", None), "family", type(model).__name__)
    _refuse_unknown(unknown, unmatched, len(state), source, family)
    changes, missing_alpha = [], 0
    for param, parts in sorted(groups.items()):
        new, no_alpha = _changes(param, parts, names.params, ctx)
        changes += new
        missing_alpha += no_alpha
    if unmatched:  # after the shape checks: a LoRA for another model size is told by its first shape
        raise CheckpointError(f"LoRA {source}: {len(unmatched)} of {len(state)} keys match no parameter of this "
                              f"{family} model: {_few(unmatched)}; is it a LoRA for another model variant?")
    if missing_alpha:
        log.warning("LoRA %s: %d low-rank pair(s) have no alpha; using alpha = rank (scale 1.0), as diffusers, "
                    "PEFT and ComfyUI do", source, missing_alpha)
    return LoraWeights(source, tuple(changes), _counts(changes))


def _group(state, names: _Names, source: str):
    """{param: {kind: _Part}}, the keys that match no parameter, and the keys of unknown kinds."""
    groups: dict = {}
    unmatched, unknown = [], []
    for key in sorted(state):
        split = _split(key)
        if split is None:
            unknown.append(key)
            continue
        path, naming, kind = split
        hit = names.param(path, naming, kind)
        if hit is None:
            unmatched.append(key)
            continue
        slot = groups.setdefault(hit[0], {})
        if kind in slot:
            raise CheckpointError(f"LoRA {source}: keys {slot[kind].key!r} and {key!r} both give the {kind} of "
                                  f"{hit[0]}; the file is malformed")
        slot[kind] = _Part(key, state[key], hit[1], path)
    return groups, unmatched, unknown


def _refuse_unknown(unknown, unmatched, total: int, source: str, family: str) -> None:
    if unknown:
        raise CheckpointError(
            f"LoRA {source}: keys of a kind vdrt does not read: {_few(unknown)}; vdrt reads lora_A/lora_B, "
            "lora_down/lora_up, alpha, diff and diff_b keys (LoCon, LoHa, LoKr and DoRA are not supported)")
    if len(unmatched) == total:
        raise CheckpointError(
            f"LoRA {source}: none of its {total} keys matches a parameter of this {family} model (first: "
            f"{_few(unmatched, 3)}); it is a LoRA for another model, or named in a way vdrt does not map")


def _changes(param: str, parts: dict, params: dict, ctx: _Ctx):
    """The LowRank / Diff changes for one parameter, checked; also 1 if a low-rank pair had no alpha."""
    _check_dtype(param, params[param], ctx.source)
    for part in parts.values():
        if not bool(torch.isfinite(part.tensor).all()):
            raise CheckpointError(f"LoRA {ctx.source}: {part.key} holds NaN or infinite values; the file is corrupt")
    out, no_alpha = [], 0
    if parts.keys() & {"down", "up", "alpha", "up_bias"}:
        low = _low_rank(param, parts, params[param], ctx.source)
        no_alpha = int("alpha" not in parts and ctx.peft is None)
        if "alpha" not in parts and ctx.peft is not None:
            low.rank_scale = ctx.peft.rank_scale(parts["down"].path, low.down.shape[0])
        out.append(low)
        if "up_bias" in parts:
            out.append(_up_bias(param, parts["up_bias"], params, low.rank_scale, ctx.source))
    for kind in ("diff", "diff_b"):
        if kind in parts:
            part = parts[kind]
            _check_shape(part.key, tuple(part.tensor.shape), params[param], ctx.source)
            out.append(Diff(param, part.tensor, part.fmt))
    return out, no_alpha


def _up_bias(weight: str, part: _Part, params: dict, rank_scale: float, source: str) -> Diff:
    bias = weight[: -len("weight")] + "bias"
    if bias not in params:
        raise CheckpointError(f"LoRA {source}: {part.key} is a bias delta for a layer without bias ({weight})")
    _check_dtype(bias, params[bias], source)
    _check_shape(part.key, tuple(part.tensor.shape), params[bias], source)
    return Diff(bias, part.tensor, part.fmt, rank_scale)


def _low_rank(param: str, parts: dict, target: torch.Tensor, source: str) -> LowRank:
    """The checked low-rank pair of `param`, at alpha / r (alpha = r when the file gives none)."""
    if "down" not in parts or "up" not in parts:
        have = ", ".join(parts[k].key for k in ("down", "up", "alpha", "up_bias") if k in parts)
        raise CheckpointError(f"LoRA {source}: {param} has an incomplete low-rank pair ({have}); both the down "
                              "(lora_A / lora_down) and the up (lora_B / lora_up) matrix are needed")
    (dkey, down, fmt, _), (ukey, up, _, _) = parts["down"], parts["up"]
    if down.ndim < 2 or up.ndim != down.ndim or any(n != 1 for n in up.shape[2:]):
        raise CheckpointError(f"LoRA {source}: {dkey} {tuple(down.shape)} and {ukey} {tuple(up.shape)} are not "
                              "a low-rank pair (down (r, in, ...), up (out, r, 1, ...))")
    if down.shape[0] != up.shape[1]:
        raise CheckpointError(f"LoRA {source}: rank mismatch for {param}: {dkey} has rank {down.shape[0]} "
                              f"{tuple(down.shape)} but {ukey} has rank {up.shape[1]} {tuple(up.shape)}")
    _check_shape(ukey, (up.shape[0], *down.shape[1:]), target, source)
    return LowRank(param, down, up, _alpha(parts, down.shape[0], source) / down.shape[0], fmt)


def _alpha(parts: dict, rank: int, source: str) -> float:
    if "alpha" not in parts:
        return float(rank)
    key, a, _, _ = parts["alpha"]
    if a.numel() != 1:
        raise CheckpointError(f"LoRA {source}: {key} must be a scalar, got shape {tuple(a.shape)}")
    value = float(a.reshape(()).item())
    if not math.isfinite(value):
        raise CheckpointError(f"LoRA {source}: {key} is {value}; alpha must be finite")
    return value


def _check_shape(key: str, delta_shape: tuple, target: torch.Tensor, source: str) -> None:
    if math.prod(delta_shape) != target.numel() or _squeeze(delta_shape) != _squeeze(tuple(target.shape)):
        raise CheckpointError(f"LoRA {source} does not fit this model: {key} gives a delta of shape "
                              f"{tuple(delta_shape)} but the model's parameter is {tuple(target.shape)}; "
                              "is it a LoRA for another model size or variant?")


def _squeeze(shape: tuple) -> tuple:
    """Shapes equal up to size-1 dims (a Conv3d-style LoRA on a 5-D weight, or a (1, D) bias delta)."""
    return tuple(n for n in shape if n != 1)


def _check_dtype(param: str, target: torch.Tensor, source: str) -> None:
    if target.dtype not in _FLOATS:
        raise CheckpointError(f"LoRA {source}: {param} is {target.dtype}; apply LoRAs before quantizing the model")


def _counts(changes) -> dict:
    counts: dict = {}
    for c in changes:
        kind = "low-rank" if isinstance(c, LowRank) else "diff_b" if c.param.endswith(".bias") else "diff"
        row = counts.setdefault(c.fmt, {"low-rank": 0, "diff": 0, "diff_b": 0})
        row[kind] += 1
    return counts
