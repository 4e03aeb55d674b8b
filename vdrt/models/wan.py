"""The `wan` family: Wan2.1 DiT (text-to-video and image-to-video), numerically diffusers' WanTransformer3DModel.

`WanModel(latents, timestep, context, cond=None, image_embeds=None)`:
  latents (B, C, F, H, W), timestep (B,) in [0, 1000], context (B, T, text_dim),
  cond (B, cond_channels, F, H, W) for I2V (4 mask + 16 image-latent channels, concatenated
  after the latents), image_embeds (B, I, image_dim) for I2V (CLIP ViT-H tokens, I = 257)
  -> (B, out_channels, F, H, W).
The model takes any text length T; padding prompts to `text_len` (Wan's T5: 512) is the
encoder's job. Building blocks live in `wan_blocks`; diffusers checkpoints convert in `wan_convert`.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, ClassVar

import torch
from torch import nn

from vdrt import ops, sparse
from vdrt.errors import ConfigError
from vdrt.models.config import ModelConfig
from vdrt.models.layers import Linear
from vdrt.models.wan_blocks import (PatchEmbed, TileOrder, WanBlock, WanHead, WanImageEmbedding, WanRope,
                                    timestep_sinusoid)

_14B = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
_TINY = dict(text_dim=64, dim=128, ffn_dim=256, num_heads=2, num_layers=2)


@dataclasses.dataclass(frozen=True)
class WanConfig(ModelConfig):
    """Wan2.1 DiT hyperparameters (defaults: Wan2.1 T2V 1.3B)."""

    family: ClassVar[str] = "wan"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "wan2.1-t2v-1.3b": {},
        "wan2.1-t2v-14b": dict(_14B),
        "wan2.1-i2v-14b-480p": dict(_14B, cond_channels=20, image_dim=1280),
        "wan2.1-i2v-14b-720p": dict(_14B, cond_channels=20, image_dim=1280),
        "wan-tiny": dict(_TINY),
        "wan-tiny-i2v": dict(_TINY, cond_channels=20, image_dim=32),
    }

    in_channels: int = 16  # latent channels
    out_channels: int = 16
    text_dim: int = 4096  # umT5-XXL
    patch_size: tuple[int, int, int] = (1, 2, 2)
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    num_heads: int = 12
    num_layers: int = 30
    eps: float = 1e-6
    cross_attn_norm: bool = True
    qk_norm: bool = True  # RMSNorm over all heads on q and k
    text_len: int = 512
    rope_max_seq_len: int = 1024
    cond_channels: int = 0  # I2V: 4 mask + 16 image-latent channels
    image_dim: int | None = None  # I2V: CLIP image-token dim (1280)

    def __post_init__(self):
        problems = _config_problems(self)
        if problems:
            raise ConfigError(f"bad WanConfig: {'; '.join(problems)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def _config_problems(c: WanConfig) -> list[str]:
    p = []
    if len(c.patch_size) != 3 or min(c.patch_size) < 1:
        p.append(f"patch_size must be 3 positive ints (pt, ph, pw), got {c.patch_size}")
    if c.num_heads < 1 or c.dim % c.num_heads or (c.dim // max(c.num_heads, 1)) % 2:
        p.append(f"dim {c.dim} must split into num_heads {c.num_heads} heads of even size")
    if c.freq_dim % 2:
        p.append(f"freq_dim must be even, got {c.freq_dim}")
    if c.cond_channels < 0 or c.in_channels < 1 or c.out_channels < 1:
        p.append("in_channels and out_channels must be >= 1 and cond_channels >= 0")
    if c.image_dim is not None and c.image_dim < 1:
        p.append(f"image_dim must be None or positive, got {c.image_dim}")
    return p


class WanModel(nn.Module):
    """Wan2.1 DiT denoiser; state-dict names follow the original Wan2.1 repository."""

    # Parameters kept in fp32 by `to_dtype` (diffusers' _keep_in_fp32_modules, in our names).
    FP32_PARAMS: ClassVar[re.Pattern] = re.compile(r"^time_embedding\.|modulation$|\.norm3\.|^img_emb\.proj\.[04]\.")

    def __init__(self, config: WanConfig):
        super().__init__()
        c = self.config = config
        d = c.dim
        self.patch_embedding = PatchEmbed(c.in_channels + c.cond_channels, d, c.patch_size)
        self.text_embedding = nn.Sequential(Linear(c.text_dim, d), nn.GELU(approximate="tanh"), Linear(d, d))
        self.time_embedding = nn.Sequential(Linear(c.freq_dim, d), nn.SiLU(), Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), Linear(d, 6 * d))
        image = c.image_dim is not None
        self.blocks = nn.ModuleList(
            WanBlock(d, c.ffn_dim, c.num_heads, c.eps, c.cross_attn_norm, c.qk_norm, image)
            for _ in range(c.num_layers)
        )
        self.head = WanHead(d, c.out_channels * math.prod(c.patch_size), c.eps)
        self.img_emb = WanImageEmbedding(c.image_dim, d) if image else None
        self.rope = WanRope(c.head_dim, c.rope_max_seq_len)

    def forward(self, latents, timestep, context, cond=None, image_embeds=None) -> torch.Tensor:
        """(B, C, F, H, W), (B,), (B, T, text_dim)[, (B, Cc, F, H, W), (B, I, image_dim)] -> (B, C_out, F, H, W)."""
        self._check_inputs(latents, cond, image_embeds)
        pt, ph, pw = self.config.patch_size
        f, h, w = latents.shape[2] // pt, latents.shape[3] // ph, latents.shape[4] // pw
        x = latents if cond is None else torch.cat([latents, cond], dim=1)
        x = self.patch_embedding(x)  # (B, C+Cc, F, H, W) -> (B, L, D)
        temb, e0 = self._time(timestep, context.dtype)  # (B, D), (B, 6, D)
        context = self.text_embedding(context)  # (B, T, text_dim) -> (B, T, D)
        image = self.img_emb(image_embeds) if image_embeds is not None else None  # (B, I, D)
        cos, sin = self.rope(f, h, w)  # (L, K/2) x2
        tiles = self._tile_order((f, h, w), x.device)
        if tiles is not None:  # sparse attention: tokens in tile order for the whole stack
            x, cos, sin = x[:, tiles.pos], cos[tiles.pos], sin[tiles.pos]
        for block in self.blocks:
            x = block(x, e0, context, image, cos, sin, (f, h, w), tiles)
        if tiles is not None:
            x = x[:, sparse.device_index(tiles.plan.layout, x.device)[1]]
        return self._unpatchify(self.head(x, temb), f, h, w)

    @torch.compiler.disable  # host-side planning (cached): a graph break, not traced
    def _tile_order(self, grid, device) -> TileOrder | None:
        """The tile order and plan when the attention choice is a sparse implementation, else None."""
        config = ops.sparse_config()
        if config is None:
            return None
        plan = config.plan(grid, self.config.num_heads)
        if plan.dense:
            return None
        return TileOrder(sparse.device_index(plan.layout, device)[0], plan)

    def _time(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) -> temb (B, D) in `dtype`, e0 (B, 6, D); the sinusoid is fp32, as diffusers."""
        s = timestep_sinusoid(timestep, self.config.freq_dim)  # (B, freq_dim) fp32
        w = self.time_embedding[0].weight
        temb = self.time_embedding(s.to(w.dtype) if w.is_floating_point() else s).to(dtype)
        return temb, self.time_projection(temb).unflatten(1, (6, -1))

    def _unpatchify(self, x: torch.Tensor, f, h, w) -> torch.Tensor:
        """(B, L, pt*ph*pw*C) -> (B, C, f*pt, h*ph, w*pw)."""
        pt, ph, pw = self.config.patch_size
        c = self.config.out_channels
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], c, f * pt, h * ph, w * pw)

    def _check_inputs(self, latents, cond, image_embeds) -> None:
        """Shape and presence checks only (static under torch.export)."""
        c = self.config
        if latents.ndim != 5 or latents.shape[1] != c.in_channels:
            raise ConfigError(f"latents must be (B, {c.in_channels}, F, H, W), got {tuple(latents.shape)}")
        if (cond is None) != (c.cond_channels == 0):
            raise ConfigError(f"this Wan model takes cond with {c.cond_channels} channels; got "
                              f"{'none' if cond is None else tuple(cond.shape)}")
        if (image_embeds is None) != (c.image_dim is None):
            raise ConfigError(f"this Wan model takes image_embeds of dim {c.image_dim}; got "
                              f"{'none' if image_embeds is None else tuple(image_embeds.shape)}")
        grid = [n // p for n, p in zip(latents.shape[2:], c.patch_size)]
        if any(n % p for n, p in zip(latents.shape[2:], c.patch_size)) or max(grid) > c.rope_max_seq_len:
            raise ConfigError(f"latent (F, H, W) {tuple(latents.shape[2:])} must be multiples of patch_size "
                              f"{c.patch_size} with at most {c.rope_max_seq_len} patches per axis")

    def to_dtype(self, dtype: torch.dtype) -> "WanModel":
        """Cast parameters to `dtype`, keeping time embedding, modulations and affine norms fp32 (as diffusers)."""
        for name, p in self.named_parameters():
            p.data = p.data.to(torch.float32 if self.FP32_PARAMS.search(name) else dtype)
        return self
