"""The `factorized` family: a Latte-style spatio-temporal DiT (spatial and temporal blocks alternate).

Computes exactly what diffusers' `LatteTransformer3DModel` computes (adaLN-single blocks, PixArt
caption projection, 2D sincos patch positions with interpolation, a 1D sincos temporal position
added before the first temporal block when F > 1, final modulated norm and unpatchify); see
`vdrt.models.latte_convert` for the checkpoint mapping. Differences from diffusers, none of which
change the numbers: the patch embedding is a Linear over flattened (C, p, p) patches instead of a
Conv2d; tokens stay `(B, F*S, C)` throughout (no per-pass transposes, no per-frame copies of the
text or timestep); cross-attention runs over all frames' tokens at once; the temporal position
table is sliced to F (diffusers requires F == video_length); learned sigma is not modelled; and
`cond` channels may be concatenated to the latents (`cond_channels`).

Every linear goes through `vdrt.ops.linear`, the modulated norms through `ops.adaln_modulate`,
spatial and cross attention through `ops.attention` and temporal attention through
`ops.temporal_attention` with (B, F, S, H, D) views of the projections. The 2D positional
embedding is computed from the input's shape with torch ops (in float64, as diffusers, then cast
to float32; float32 throughout would differ by up to ~3e-6), the temporal one is sliced from a
(max_frames, C) buffer, so `torch.export` with dynamic frames / height / width works.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vdrt.errors import ConfigError
from vdrt.models import stepcache
from vdrt.models.config import ModelConfig
from vdrt.models.factorized_blocks import FREQ_DIM, MLP2, Head, Layer, sincos_1d, sincos_2d, timestep_features
from vdrt.models.layers import Linear

FFN_ACTS = ("gelu_tanh", "gelu")


@dataclasses.dataclass(frozen=True)
class FactorizedConfig(ModelConfig):
    """A factorized DiT. `num_layers` counts (spatial block, temporal block) pairs, as diffusers' Latte.

    sample_size is the latent height/width the 2D position grid was trained at (PixArt's base
    grid is sample_size // p patches, interpolation scale max(sample_size // 64, 1)); max_frames
    bounds the temporal position table; text_len is the usual prompt length (for shape profiles).
    """

    family: ClassVar[str] = "factorized"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Latte-1's transformer (diffusers num_layers=28), without the learned-sigma channels.
        "latte-like": dict(in_channels=4, out_channels=4, text_dim=4096, patch_size=(1, 2, 2), dim=1152,
                           num_heads=16, num_layers=28, max_frames=16, sample_size=64, text_len=120),
        # Pixel-space, random-weights default of `vdrt generate`: ~1.1M parameters.
        "factorized-tiny": dict(in_channels=3, out_channels=3, text_dim=64, patch_size=(1, 4, 4), dim=128,
                                num_heads=4, num_layers=2, max_frames=32, sample_size=64, text_len=32),
    }

    in_channels: int = 4
    out_channels: int = 4
    text_dim: int = 4096
    patch_size: tuple[int, int, int] = (1, 2, 2)
    dim: int = 1152
    num_heads: int = 16
    num_layers: int = 28
    ffn_mult: float = 4.0
    eps: float = 1e-6
    max_frames: int = 16
    sample_size: int = 64
    cond_channels: int = 0
    text_len: int = 120
    norm_affine: bool = False
    qkv_bias: bool = True
    ffn_act: str = "gelu_tanh"

    def __post_init__(self):
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        if len(self.patch_size) != 3 or self.patch_size[0] != 1 or self.patch_size[1] != self.patch_size[2]:
            raise ConfigError(f"factorized patch_size must be (1, p, p) (spatial patches only); got {self.patch_size}")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ConfigError(f"dim {self.dim} must split into {self.num_heads} heads of an even size")
        if self.dim % 4:
            raise ConfigError(f"dim {self.dim} must be a multiple of 4 (2D sincos positions)")
        if self.ffn_act not in FFN_ACTS:
            raise ConfigError(f"ffn_act {self.ffn_act!r} is not supported; choose one of {FFN_ACTS}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        return int(self.dim * self.ffn_mult)

    @property
    def base_size(self) -> int:
        return self.sample_size // self.patch_size[1]

    @property
    def interpolation_scale(self) -> int:
        return max(self.sample_size // 64, 1)


class FactorizedModel(nn.Module):
    """`forward(latents (B, C, F, H, W), timestep (B,), context (B, T, E), cond=None) -> (B, C_out, F, H, W)`."""

    def __init__(self, config: FactorizedConfig):
        super().__init__()
        self.config = c = config
        p = c.patch_size[1]
        self.patch_embed = Linear((c.in_channels + c.cond_channels) * p * p, c.dim)
        self.time_in = MLP2(FREQ_DIM, c.dim, "silu")
        self.time_mod = Linear(c.dim, 6 * c.dim)
        self.text_in = MLP2(c.text_dim, c.dim, "gelu_tanh")
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_layers)])
        self.head = Head(c.dim, p * p * c.out_channels)
        temporal = sincos_1d(torch.arange(c.max_frames), c.dim).float()  # (max_frames, C)
        self.register_buffer("temporal_pos", temporal, persistent=False)

    def forward(self, latents, timestep, context, cond=None):
        b, _, f, hh, ww = latents.shape
        x = self._inputs(latents, cond)  # (B, C_in, F, H, W)
        p = self.config.patch_size[1]
        h, w = hh // p, ww // p
        x = self.embed(x, h, w)  # (B, L, C)
        temb = self.time_in(timestep_features(timestep.reshape(-1).expand(b)).to(x.dtype))  # (B, C)
        t6 = self.time_mod(F.silu(temb)).view(b, 6, -1)  # (B, 6, C)
        ctx = self.text_in(context.to(x.dtype))  # (B, T, C)
        cache = stepcache.active()
        if cache is None:
            for i, layer in enumerate(self.layers):
                x = layer.spatial(x, t6, ctx, f)
                if i == 0:
                    x = self._add_temporal_pos(x, f)
                x = layer.temporal(x, t6, ctx, f)
        else:  # a step-cache policy runs or reuses the stack (vdrt.models.stepcache)
            x = stepcache.run(cache, self._stack(x, t6, ctx, f))
        return self.unpatchify(self.head(x, temb), f, h, w)

    def _stack(self, x, t6, ctx, f: int) -> stepcache.Stack:
        """The stack of (spatial, temporal) layers over (B, L, C) hidden states x; per-row inputs t6, ctx."""
        def run(y, rows, start, stop):  # (b, L, C) -> (b, L, C)
            t, c = stepcache.rows_of(t6, rows), stepcache.rows_of(ctx, rows)
            for i in range(start, stop):
                y = self.layers[i].spatial(y, t, c, f)
                if i == 0:
                    y = self._add_temporal_pos(y, f)
                y = self.layers[i].temporal(y, t, c, f)
            return y
        return stepcache.Stack(x, len(self.layers), run, lambda: self.layers[0].spatial.attn_input(x, t6))

    def _inputs(self, latents, cond):
        c = self.config
        b, ch, f, hh, ww = latents.shape
        p = c.patch_size[1]
        if ch != c.in_channels or hh % p or ww % p:
            raise ConfigError(f"latents {tuple(latents.shape)} do not fit: need {c.in_channels} channels and "
                              f"height/width divisible by the patch size {p}")
        if f > c.max_frames:
            raise ConfigError(f"{f} frames exceed max_frames={c.max_frames} of this model; use fewer frames")
        if c.cond_channels == 0:
            if cond is not None:
                raise ConfigError("this model takes no cond channels (cond_channels=0); pass cond=None")
            return latents
        if cond is None:
            cond = latents.new_zeros(b, c.cond_channels, f, hh, ww)  # "nothing known"
        if cond.shape != (b, c.cond_channels, f, hh, ww):
            raise ConfigError(f"cond must be {(b, c.cond_channels, f, hh, ww)}; got {tuple(cond.shape)}")
        return torch.cat([latents, cond.to(latents.dtype)], dim=1)

    def embed(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, F*h*w, D): patches flattened as (C, p, p), plus the 2D positions."""
        b, ch, f, _, _ = x.shape
        p, c = self.config.patch_size[1], self.config
        x = x.reshape(b, ch, f, h, p, w, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f, h * w, ch * p * p)
        pos = sincos_2d(h, w, c.dim, c.base_size, c.interpolation_scale, x.device)  # (S, D)
        x = self.patch_embed(x) + pos.to(x.dtype)  # (B, F, S, D)
        return x.view(b, f * h * w, c.dim)

    def _add_temporal_pos(self, x: torch.Tensor, f: int) -> torch.Tensor:
        """x + temporal_pos[:F] over (B, F, S, C); skipped when F == 1 (as Latte, without a branch)."""
        b, n, d = x.shape
        gate = (torch.arange(f, device=x.device) > 0).any().to(x.dtype)  # 0 when F == 1
        pos = self.temporal_pos[:f].to(x.dtype) * gate  # (F, C)
        return (x.view(b, f, n // f, d) + pos[None, :, None, :]).view(b, n, d)

    def unpatchify(self, x: torch.Tensor, f: int, h: int, w: int) -> torch.Tensor:
        """(B, F*h*w, p*p*C) with channels ordered (p, q, C) -> (B, C, F, h*p, w*p)."""
        b, p, c = x.shape[0], self.config.patch_size[1], self.config.out_channels
        x = x.view(b, f, h, w, p, p, c).permute(0, 6, 1, 2, 4, 3, 5)  # (B, C, F, h, p, w, q)
        return x.reshape(b, c, f, h * p, w * p)
