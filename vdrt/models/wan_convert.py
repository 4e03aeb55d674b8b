"""diffusers `WanTransformer3DModel` -> vdrt `WanModel`: config and state-dict names.

Our names are the original Wan2.1 repository's; the rules below are the inverse of
diffusers' `convert_wan_transformer_to_diffusers` (note its norm2/norm3 swap: diffusers'
`norm2` is the cross-attention norm, Wan's `norm3`). Every diffusers key must match
exactly one rule, so a checkpoint we do not understand fails loudly instead of loading
half its weights.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable

from vdrt.errors import CheckpointError, ConfigError
from vdrt.models.wan import WanConfig

log = logging.getLogger(__name__)

DIFFUSERS_CLASS = "WanTransformer3DModel"

_KNOWN_KEYS = {
    "patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim",
    "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps", "image_dim",
    "added_kv_proj_dim", "rope_max_seq_len", "pos_embed_seq_len",
    "recipe",  # not architecture: the few-step recipe a distilled checkpoint names (vdrt.pipeline.sources)
}


def config_from_diffusers(d: dict[str, Any]) -> WanConfig:
    """A diffusers `transformer/config.json` dict -> WanConfig (in_channels 36 -> 16 latent + 20 cond)."""
    _check_diffusers_config(d)
    heads, head_dim = d.get("num_attention_heads", 40), d.get("attention_head_dim", 128)
    in_ch = d.get("in_channels", 16)
    out_ch = d.get("out_channels") or in_ch
    if in_ch < out_ch:
        raise ConfigError(f"diffusers Wan config has in_channels {in_ch} < out_channels {out_ch}; "
                          "vdrt reads in_channels as latent channels plus conditioning channels")
    return WanConfig(
        in_channels=out_ch, out_channels=out_ch, cond_channels=in_ch - out_ch,
        text_dim=d.get("text_dim", 4096), patch_size=tuple(d.get("patch_size", (1, 2, 2))),
        dim=heads * head_dim, ffn_dim=d.get("ffn_dim", 13824), freq_dim=d.get("freq_dim", 256),
        num_heads=heads, num_layers=d.get("num_layers", 40), eps=d.get("eps", 1e-6),
        cross_attn_norm=bool(d.get("cross_attn_norm", True)), qk_norm=True,
        rope_max_seq_len=d.get("rope_max_seq_len", 1024), image_dim=d.get("image_dim"),
    )


def config_to_diffusers(cfg: WanConfig) -> dict[str, Any]:
    """WanConfig -> `WanTransformer3DModel(**kwargs)` (the inverse of config_from_diffusers)."""
    return dict(patch_size=tuple(cfg.patch_size), num_attention_heads=cfg.num_heads,
                attention_head_dim=cfg.dim // cfg.num_heads, in_channels=cfg.in_channels + cfg.cond_channels,
                out_channels=cfg.out_channels, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim,
                num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps,
                image_dim=cfg.image_dim, rope_max_seq_len=cfg.rope_max_seq_len,
                **({"added_kv_proj_dim": cfg.dim} if cfg.image_dim else {}))


def _check_diffusers_config(d: dict[str, Any]) -> None:
    cls = d.get("_class_name", DIFFUSERS_CLASS)
    if cls != DIFFUSERS_CLASS:
        raise ConfigError(f"diffusers class {cls!r} is not supported by vdrt's wan family; "
                          f"only {DIFFUSERS_CLASS} (Wan2.1 T2V / I2V) is")
    unknown = sorted(k for k in d if not k.startswith("_") and k not in _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"diffusers {DIFFUSERS_CLASS} config has fields vdrt does not implement: {unknown}")
    if d.get("pos_embed_seq_len") is not None:
        raise ConfigError("pos_embed_seq_len is set: this is a Wan2.1 FLF2V (first-last-frame) model, "
                          "which vdrt does not implement; use a T2V or I2V checkpoint")
    if d.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads":
        raise ConfigError(f"qk_norm={d['qk_norm']!r} is not supported; vdrt implements 'rms_norm_across_heads'")
    _check_image_branch(d)


def _check_image_branch(d: dict[str, Any]) -> None:
    image_dim, kv_dim = d.get("image_dim"), d.get("added_kv_proj_dim")
    inner = d.get("num_attention_heads", 40) * d.get("attention_head_dim", 128)
    if (image_dim is None) != (kv_dim is None):
        raise ConfigError(f"image_dim={image_dim} and added_kv_proj_dim={kv_dim} must be both set (I2V) "
                          "or both null (T2V)")
    if kv_dim is not None and kv_dim != inner:
        raise ConfigError(f"added_kv_proj_dim={kv_dim} must equal the model dim {inner} "
                          "(the image tokens are projected to the model dim first)")


# ---------------------------------------------------------------- state dict

_ATTN = {"attn1": "self_attn", "attn2": "cross_attn"}
_ATTN_PARTS = {
    "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o", "norm_q": "norm_q", "norm_k": "norm_k",
    "add_k_proj": "k_img", "add_v_proj": "v_img", "norm_added_k": "norm_k_img",
}
_P = r"(weight|bias)"

# (diffusers full-match regex, our name: a template for Match.expand or a function of the match)
_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(p), r) for p, r in [
        (rf"patch_embedding\.{_P}", r"patch_embedding.\1"),
        (rf"condition_embedder\.time_embedder\.linear_1\.{_P}", r"time_embedding.0.\1"),
        (rf"condition_embedder\.time_embedder\.linear_2\.{_P}", r"time_embedding.2.\1"),
        (rf"condition_embedder\.time_proj\.{_P}", r"time_projection.1.\1"),
        (rf"condition_embedder\.text_embedder\.linear_1\.{_P}", r"text_embedding.0.\1"),
        (rf"condition_embedder\.text_embedder\.linear_2\.{_P}", r"text_embedding.2.\1"),
        (rf"condition_embedder\.image_embedder\.norm1\.{_P}", r"img_emb.proj.0.\1"),
        (rf"condition_embedder\.image_embedder\.ff\.net\.0\.proj\.{_P}", r"img_emb.proj.1.\1"),
        (rf"condition_embedder\.image_embedder\.ff\.net\.2\.{_P}", r"img_emb.proj.3.\1"),
        (rf"condition_embedder\.image_embedder\.norm2\.{_P}", r"img_emb.proj.4.\1"),
        (rf"blocks\.(\d+)\.(attn[12])\.({'|'.join(map(re.escape, _ATTN_PARTS))})\.{_P}",
         lambda m: f"blocks.{m[1]}.{_ATTN[m[2]]}.{_ATTN_PARTS[m[3]]}.{m[4]}"),
        (rf"blocks\.(\d+)\.norm2\.{_P}", r"blocks.\1.norm3.\2"),
        (rf"blocks\.(\d+)\.ffn\.net\.0\.proj\.{_P}", r"blocks.\1.ffn.0.\2"),
        (rf"blocks\.(\d+)\.ffn\.net\.2\.{_P}", r"blocks.\1.ffn.2.\2"),
        (r"blocks\.(\d+)\.scale_shift_table", r"blocks.\1.modulation"),
        (rf"proj_out\.{_P}", r"head.head.\1"),
        (r"scale_shift_table", r"head.modulation"),
    ]
]
# Keys diffusers itself ignores on load (`_keys_to_ignore_on_load_unexpected`).
_IGNORED = re.compile(r"blocks\.\d+\.attn2\.norm_added_q\.(weight|bias)")


def rename_diffusers_key(key: str) -> str | None:
    """Our name for diffusers key `key`, or None when no rule maps it."""
    for pattern, target in _RULES:
        m = pattern.fullmatch(key)
        if m:
            return target(m) if callable(target) else m.expand(target)
    return None


def state_dict_to_diffusers(ours: dict[str, Any], diffusers_keys) -> dict[str, Any]:
    """Our WanModel state dict under the diffusers names `diffusers_keys` (same rules, read backwards)."""
    out = {}
    for key in diffusers_keys:
        if _IGNORED.fullmatch(key):
            continue
        name = rename_diffusers_key(key)
        if name is None or name not in ours:
            raise CheckpointError(f"diffusers key {key!r} has no vdrt tensor ({name!r}); the configs differ")
        out[key] = ours[name]
    return out


def state_dict_from_diffusers(sd: dict[str, Any]) -> dict[str, Any]:
    """Rename a diffusers WanTransformer3DModel state dict to WanModel names (tensors are not copied)."""
    out, unmapped = {}, []
    for key, value in sd.items():
        if _IGNORED.fullmatch(key):
            log.debug("dropping %s (diffusers ignores it too)", key)
            continue
        name = rename_diffusers_key(key)
        if name is None:
            unmapped.append(key)
        elif name in out:
            raise CheckpointError(f"two diffusers keys map to {name!r} (second: {key!r}); the checkpoint is malformed")
        else:
            out[name] = value
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f" ... ({len(unmapped)} in all)" if len(unmapped) > 8 else "")
        raise CheckpointError(f"diffusers Wan checkpoint has keys vdrt cannot map: {shown}; "
                              f"it is not a plain {DIFFUSERS_CLASS} (Wan2.1 T2V/I2V) checkpoint")
    return out
