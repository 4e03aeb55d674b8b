"""diffusers `LatteTransformer3DModel` -> vdrt `FactorizedModel`: config and state-dict mapping.

The mapping is exact (tests/models/test_factorized.py checks outputs against diffusers). Latte-1
predicts a learned variance too (out_channels = 2 * in_channels); vdrt models predict only the
noise, so such checkpoints need `drop_sigma=True`, which keeps the first in_channels outputs per
patch position of proj_out, exactly what LattePipeline keeps.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from vdrt.errors import CheckpointError, ConfigError
from vdrt.models.factorized import FactorizedConfig

DIFFUSERS_CLASS = "LatteTransformer3DModel"

_ACTS = {"gelu-approximate": "gelu_tanh", "gelu": "gelu"}
_IGNORED_CONFIG = {"dropout", "num_embeds_ada_norm"}  # inference-irrelevant / unused by ada_norm_single
_KNOWN_CONFIG = {
    "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "num_layers",
    "cross_attention_dim", "attention_bias", "sample_size", "patch_size", "activation_fn", "norm_type",
    "norm_elementwise_affine", "norm_eps", "caption_channels", "video_length",
} | _IGNORED_CONFIG
_IGNORED_KEYS = {"pos_embed.pos_embed", "temp_pos_embed"}  # buffers vdrt recomputes from shapes

_BLOCK_RULES = [  # inside transformer_blocks.{i} / temporal_transformer_blocks.{i}
    (r"norm([12])\.(weight|bias)", r"norm\1.\2"),
    (r"attn1\.to_([qkv])\.(weight|bias)", r"attn.to_\1.\2"),
    (r"attn1\.to_out\.0\.(weight|bias)", r"attn.to_out.\1"),
    (r"attn2\.to_([qkv])\.(weight|bias)", r"cross.to_\1.\2"),
    (r"attn2\.to_out\.0\.(weight|bias)", r"cross.to_out.\1"),
    (r"ff\.net\.0\.proj\.(weight|bias)", r"ffn.fc1.\1"),
    (r"ff\.net\.2\.(weight|bias)", r"ffn.fc2.\1"),
    (r"scale_shift_table", r"modulation"),
]
_TOP_RULES = [
    (r"pos_embed\.proj\.(weight|bias)", r"patch_embed.\1"),
    (r"adaln_single\.emb\.timestep_embedder\.(linear_[12])\.(weight|bias)", r"time_in.\1.\2"),
    (r"adaln_single\.linear\.(weight|bias)", r"time_mod.\1"),
    (r"caption_projection\.(linear_[12])\.(weight|bias)", r"text_in.\1.\2"),
    (r"scale_shift_table", r"head.modulation"),
    (r"proj_out\.(weight|bias)", r"head.proj.\1"),
]


def config_from_diffusers(d: dict[str, Any], drop_sigma: bool = False, **overrides) -> FactorizedConfig:
    """A diffusers Latte `config.json` dict -> FactorizedConfig (ConfigError naming what is unsupported)."""
    _check_config_keys(d)
    _require(d, "norm_type", "layer_norm", {"ada_norm_single"})
    _require(d, "activation_fn", "geglu", set(_ACTS))
    heads, head_dim = d.get("num_attention_heads", 16), d.get("attention_head_dim", 88)
    dim = heads * head_dim
    if d.get("cross_attention_dim") != dim:
        raise ConfigError(f"cross_attention_dim={d.get('cross_attention_dim')} is not supported: "
                          f"vdrt needs it equal to the inner dim {dim} (the caption projection's width)")
    for key in ("in_channels", "patch_size", "caption_channels"):
        if d.get(key) is None:
            raise ConfigError(f"diffusers Latte config lacks {key!r}; it is required")
    kw = dict(
        in_channels=d["in_channels"], out_channels=_out_channels(d, drop_sigma), text_dim=d["caption_channels"],
        patch_size=(1, d["patch_size"], d["patch_size"]), dim=dim, num_heads=heads,
        num_layers=d.get("num_layers", 1), ffn_mult=4.0, eps=d.get("norm_eps", 1e-5),
        max_frames=d.get("video_length", 16), sample_size=d.get("sample_size", 64),
        norm_affine=d.get("norm_elementwise_affine", True), qkv_bias=d.get("attention_bias", False),
        ffn_act=_ACTS[d.get("activation_fn", "geglu")],
    )
    return FactorizedConfig(**{**kw, **overrides})


def _check_config_keys(d: dict[str, Any]) -> None:
    if d.get("_class_name", DIFFUSERS_CLASS) != DIFFUSERS_CLASS:
        raise ConfigError(f"config _class_name={d['_class_name']!r} is not a {DIFFUSERS_CLASS}")
    unknown = sorted(k for k in d if not k.startswith("_") and k not in _KNOWN_CONFIG)
    if unknown:
        raise ConfigError(f"diffusers Latte config has fields vdrt does not support: {unknown}")


def _require(d: dict[str, Any], key: str, default: str, allowed: set[str]) -> None:
    if d.get(key, default) not in allowed:
        raise ConfigError(f"diffusers Latte config {key}={d.get(key, default)!r} is not supported; "
                          f"vdrt supports {sorted(allowed)}")


def _out_channels(d: dict[str, Any], drop_sigma: bool) -> int:
    cin = d["in_channels"]
    cout = d.get("out_channels") or cin
    if cout == 2 * cin and cin > 0:
        if not drop_sigma:
            raise ConfigError(f"out_channels={cout} = 2 * in_channels is a learned-sigma Latte; vdrt predicts "
                              f"noise only: convert with drop_sigma=True to keep the first {cin} channels")
        return cin
    if drop_sigma:
        raise ConfigError(f"drop_sigma=True but out_channels={cout} is not 2 * in_channels={cin}")
    return cout


def state_dict_from_diffusers(sd: dict[str, torch.Tensor], drop_sigma: bool = False) -> dict[str, torch.Tensor]:
    """diffusers Latte state dict -> FactorizedModel state dict (CheckpointError names unknown keys)."""
    out, unexpected = {}, []
    for key, value in sd.items():
        if key in _IGNORED_KEYS:
            continue
        new = _map_key(key)
        if new is None:
            unexpected.append(key)
        else:
            out[new] = value
    if unexpected:
        raise CheckpointError(f"not a diffusers {DIFFUSERS_CLASS} state dict: unexpected keys {sorted(unexpected)[:20]}"
                              f"{' ...' if len(unexpected) > 20 else ''}")
    p = _reshape_patch_embed(out)
    if drop_sigma:
        _drop_sigma(out, p)
    return out


def _map_key(key: str) -> str | None:
    m = re.fullmatch(r"(transformer_blocks|temporal_transformer_blocks)\.(\d+)\.(.+)", key)
    if m:
        kind = "spatial" if m.group(1) == "transformer_blocks" else "temporal"
        inner = _apply(_BLOCK_RULES, m.group(3))
        return None if inner is None else f"layers.{m.group(2)}.{kind}.{inner}"
    return _apply(_TOP_RULES, key)


def _apply(rules, key: str) -> str | None:
    for pattern, repl in rules:
        if re.fullmatch(pattern, key):
            return re.sub(f"^{pattern}$", repl, key)
    return None


def _reshape_patch_embed(sd: dict[str, torch.Tensor]) -> int:
    """Conv2d weight (D, C, p, p) -> Linear weight (D, C*p*p) over patches flattened as (C, p, p); returns p."""
    w = sd.get("patch_embed.weight")
    if w is None or w.ndim != 4:
        raise CheckpointError("diffusers Latte state dict lacks the 4-D pos_embed.proj.weight (patch Conv2d)")
    sd["patch_embed.weight"] = w.reshape(w.shape[0], -1)
    return w.shape[-1]


def _drop_sigma(sd: dict[str, torch.Tensor], p: int) -> None:
    """proj_out rows are ordered (p, q, 2*C): keep the first C (the noise half) of each patch position."""
    w, b = sd["head.proj.weight"], sd["head.proj.bias"]
    c2 = w.shape[0] // (p * p)
    if c2 % 2 or c2 * p * p != w.shape[0]:
        raise CheckpointError(f"drop_sigma: proj_out has {w.shape[0]} rows, not p*p*2*C for patch size {p}")
    sd["head.proj.weight"] = w.view(p * p, c2, -1)[:, : c2 // 2].reshape(p * p * c2 // 2, -1)
    sd["head.proj.bias"] = b.view(p * p, c2)[:, : c2 // 2].reshape(-1)
