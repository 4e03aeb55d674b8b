"""The generic diffusers path: a diffusers denoiser as-is -> vdrt ops for attention -> an AOTI / ONNX engine.

Supported: `UNetSpatioTemporalConditionModel` (Stable Video Diffusion) and `WanTransformer3DModel`.
Their attention processors are swapped for ones that call `vdrt.ops.attention` (so vdrt's
kernels plug in wherever the registry picks them); everything else runs diffusers' own code.

Engine protocol mapping, `engine(latents, timestep, context, **cond)`:

- SVD: `latents` = `sample` (B, F, C_in, H, W) in diffusers' layout, the noise latents already
  concatenated with the image latents (C_in = 8); `timestep` (B,); `context` =
  `encoder_hidden_states` (B, 1, D), the CLIP image embedding; cond `added_time_ids` (B, 3):
  fps, motion bucket id, noise augmentation strength.
- Wan: `latents` (B, C, F, H, W); `timestep` (B,); `context` = `encoder_hidden_states`
  (B, T, 4096); I2V cond: `cond` (B, 20, F, H, W), concatenated to the latents on channels, and
  `image_embeds` (B, 257, 1280) -> `encoder_hidden_states_image`.

The output is the model's `sample` in the same layout as the latents. A diffusers Wan engine
records a vdrt WanConfig (converted from the diffusers config), so `Pipeline.from_pretrained`
runs it; an SVD engine records a `DiffusersModelConfig` (family "diffusers", layout "svd").
SVD's batch is specialized by torch.export and its frames trip a spurious guard with explicit
Dims, so SVD is exported with `Dim.AUTO` ranges for its unpatched dims (Wan: explicit Dims,
AUTO only as a fallback); the manifest keeps the ranges the exported program accepts (SVD:
batch 2 only, frames >= 2).
"""
from __future__ import annotations

import copy
import json
import logging

import torch
import torch.nn.functional as F
from torch import nn

from vdrt import ops
from vdrt.errors import ConfigError, require

log = logging.getLogger(__name__)

SUPPORTED = ("UNetSpatioTemporalConditionModel", "WanTransformer3DModel")


# ---------------------------------------------------------------- attention processors


def _attend(q, k, v, scale, mask=None):
    """(B, L, H, D) x3 -> (B, L, H, D) through vdrt.ops.attention (SDPA when a mask or custom scale is used)."""
    if mask is None and abs(scale - q.shape[-1] ** -0.5) < 1e-12:
        return ops.attention(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         scale=scale)
    return out.transpose(1, 2)


class VdrtAttnProcessor:
    """diffusers' AttnProcessor2_0 (used by SVD's spatial and temporal transformer blocks) over vdrt.ops."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image = hidden_states.ndim == 4
        if image:  # (B, C, H, W) -> (B, H*W, C)
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        bsz, seq = ctx.shape[0], ctx.shape[1]
        mask = _mask(attn, attention_mask, seq, bsz)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is not None and attn.norm_cross:
            ctx = attn.norm_encoder_hidden_states(ctx)
        q, k, v = attn.to_q(hidden_states), attn.to_k(ctx), attn.to_v(ctx)
        q, k, v = (t.unflatten(-1, (attn.heads, -1)) for t in (q, k, v))  # (B, L, H, D)
        if attn.norm_q is not None:
            q, k = attn.norm_q(q.transpose(1, 2)).transpose(1, 2), attn.norm_k(k.transpose(1, 2)).transpose(1, 2)
        out = _attend(q, k, v, attn.scale, mask).flatten(2).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if image:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _mask(attn, attention_mask, seq: int, bsz: int):
    if attention_mask is None:
        return None
    mask = attn.prepare_attention_mask(attention_mask, seq, bsz)
    return mask.view(bsz, attn.heads, -1, mask.shape[-1])


class VdrtWanAttnProcessor:
    """diffusers' WanAttnProcessor (self, cross and I2V image attention, rotary) over vdrt.ops.attention."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        from diffusers.models.transformers import transformer_wan as tw

        image_ctx = None
        if attn.add_k_proj is not None:  # I2V: the image tokens come first; 512 text tokens (as diffusers)
            n = encoder_hidden_states.shape[1] - 512
            image_ctx, encoder_hidden_states = encoder_hidden_states[:, :n], encoder_hidden_states[:, n:]
        q, k, v = tw._get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        q, k = attn.norm_q(q), attn.norm_k(k)
        q, k, v = (t.unflatten(2, (attn.heads, -1)) for t in (q, k, v))  # (B, L, H, D)
        if rotary_emb is not None:
            q, k = _rotate(q, *rotary_emb), _rotate(k, *rotary_emb)
        out = _attend(q, k, v, q.shape[-1] ** -0.5, attention_mask).flatten(2, 3).type_as(q)
        if image_ctx is not None:
            ki, vi = tw._get_added_kv_projections(attn, image_ctx)
            ki = attn.norm_added_k(ki).unflatten(2, (attn.heads, -1))
            out = out + ops.attention(q, ki, vi.unflatten(2, (attn.heads, -1))).flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def _rotate(x, cos, sin):
    """diffusers Wan's interleaved rotary embedding: pairs (x[2i], x[2i+1]) rotated by the i-th angle."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)


def swap_attention(model: nn.Module) -> int:
    """Give every attention module of `model` a vdrt processor; returns how many were swapped."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.transformers.transformer_wan import WanAttention

    n = 0
    for m in model.modules():
        if isinstance(m, WanAttention):
            m.set_processor(VdrtWanAttnProcessor())
        elif isinstance(m, Attention):
            m.set_processor(VdrtAttnProcessor())
        else:
            continue
        n += 1
    if n == 0:
        raise ConfigError(f"{type(model).__name__} has no diffusers attention modules to route through vdrt.ops")
    return n


# ---------------------------------------------------------------- wrappers to the engine protocol


class SVDCall(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, latents, timestep, context, added_time_ids):
        """(B, F, C_in, H, W), (B,), (B, 1, D), (B, 3) -> (B, F, C_out, H, W)."""
        return self.unet(latents, timestep, context, added_time_ids, return_dict=False)[0]


class WanCall(nn.Module):
    def __init__(self, transformer, has_cond: bool, has_image: bool):
        super().__init__()
        self.transformer, self.has_cond, self.has_image = transformer, has_cond, has_image

    def forward(self, latents, timestep, context, cond=None, image_embeds=None):
        """(B, C, F, H, W), (B,), (B, T, D)[, (B, Cc, F, H, W), (B, I, E)] -> (B, C_out, F, H, W)."""
        x = torch.cat([latents, cond], dim=1) if self.has_cond else latents
        return self.transformer(x, timestep, context, encoder_hidden_states_image=image_embeds if self.has_image
                                else None, return_dict=False)[0]


def _plain_config(model) -> dict:
    return json.loads(json.dumps(dict(model.config), default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def describe(model, dtype: torch.dtype):
    """(wrapper, model_config dict, config object for shapes, inputs, outputs, layout) for a supported model."""
    name = type(model).__name__
    if name == "WanTransformer3DModel":
        from vdrt.export.shapes import signature

        from vdrt.models.wan_convert import config_from_diffusers

        cfg = config_from_diffusers(_plain_config(model))
        inputs, outputs = signature(cfg, dtype)
        wrapper = WanCall(model, cfg.cond_channels > 0, cfg.image_dim is not None)
        return wrapper, cfg.to_dict(), cfg, inputs, outputs, "vdrt"
    if name == "UNetSpatioTemporalConditionModel":
        return _describe_svd(model, dtype)
    raise ConfigError(f"the generic diffusers path takes {list(SUPPORTED)}; got {name}")


def _describe_svd(model, dtype: torch.dtype):
    from vdrt.engines.base import DiffusersModelConfig
    from vdrt.engines.manifest import dtype_name

    c = model.config
    down = 2 ** (len(c.block_out_channels) - 1)  # latent H, W must divide by every downsampling
    cfg = DiffusersModelConfig("UNetSpatioTemporalConditionModel", c.in_channels, c.out_channels,
                               c.cross_attention_dim, (1, down, down), "svd", _plain_config(model))
    dt, grid = dtype_name(dtype), ["height", "width"]
    ids = c.projection_class_embeddings_input_dim // c.addition_time_embed_dim
    inputs = [{"name": "latents", "dtype": dt, "shape": ["batch", "frames", c.in_channels, *grid]},
              {"name": "timestep", "dtype": "float32", "shape": ["batch"]},
              {"name": "context", "dtype": dt, "shape": ["batch", 1, c.cross_attention_dim]},
              {"name": "added_time_ids", "dtype": dt, "shape": ["batch", ids]}]
    outputs = [{"name": "prediction", "dtype": dt, "shape": ["batch", "frames", c.out_channels, *grid]}]
    return SVDCall(model), cfg.to_dict(), cfg, inputs, outputs, "svd"


def build_diffusers(model, backend: str, out, precision: str = "bf16", shapes: dict | None = None, example=None,
                    cache: bool = True, load: bool = True, swap: bool = True, device=None, force: bool = False,
                    **options):
    """Build a diffusers SVD UNet or Wan transformer into an engine; returns the loaded engine (or `out`).

    An existing non-empty `out` is refused unless `force=True` (as vdrt.export.build).
    """
    require("diffusers")
    from vdrt.export.build import Target, build_target, check_backend, check_out, precision_dtype
    from vdrt.export.shapes import Profile, profile

    if type(model).__name__ not in SUPPORTED:
        raise ConfigError(f"the generic diffusers path takes {list(SUPPORTED)}; got {type(model).__name__}")
    check_backend(backend, precision, options)
    check_out(out, force)
    dtype = precision_dtype(precision)
    model = copy.deepcopy(model).to(dtype).eval().requires_grad_(False)
    if swap:
        log.info("routed %d attention modules through vdrt.ops.attention", swap_attention(model))
    wrapper, model_config, cfg, inputs, outputs, layout = describe(model, dtype)
    used = {d for s in inputs for d in s["shape"] if isinstance(d, str)}
    prof = profile(cfg, shapes or {})
    prof = Profile({d: r for d, r in prof.dims.items() if d in used})
    auto = True if layout == "svd" else None  # SVD is known to fail explicit Dims: skip that attempt
    target = Target(wrapper, model_config, inputs, outputs, prof, auto_dims=auto, layout=layout,
                    options={**options, "diffusers_class": type(model).__name__, "swap_attention": swap})
    return build_target(target, backend, out, precision, example=example, cache=cache, load=load, device=device,
                        force=force)
