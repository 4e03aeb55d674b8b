"""Building blocks of the Wan2.1 DiT: 3D rope, attention, transformer block, embeddings, head.

Parameter names follow the original Wan2.1 repository (`self_attn.q`, `norm3`, `ffn.0`,
`modulation`, `head.head`, `img_emb.proj.1` ...); numerics follow diffusers 0.42.1's
`WanTransformer3DModel` (fp32 norms and modulation, fp32 timestep sinusoid, rope tables
computed in float64 and kept in fp32). No complex tensors: rope is real cos/sin.

Alphabet: B batch, C channels, F/H/W latent frames/height/width, f/h/w the patch grid,
L = f*h*w video tokens, T text tokens, I image tokens, D model dim, N heads, K head dim (D = N*K).
`vdrt.ops.attention` takes (B, L, N, K) (its own docstring calls that (B, L, H, D)).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from vdrt import ops
from vdrt.models import fp8
from vdrt.models.layers import LayerNorm, Linear, RMSNorm


def rope_tables(head_dim: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (max_len, K/2): the [frames | height | width] split of the head dim.

    Height and width get 2*(K//6) dims each and frames the rest, as Wan; angles are
    computed in float64 and rounded to fp32 once, as diffusers' WanRotaryPosEmbed.
    """
    hw = 2 * (head_dim // 6)
    angles = torch.cat([_axis_angles(d, max_len) for d in (head_dim - 2 * hw, hw, hw)], dim=1)
    return angles.cos().float(), angles.sin().float()


def _axis_angles(dim: int, max_len: int) -> torch.Tensor:
    """(max_len, dim/2) float64 angles pos * theta^(-2i/dim), theta = 10000."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    return torch.outer(torch.arange(max_len), inv_freq)


class WanRope(nn.Module):
    """Slices of precomputed rope tables for an (f, h, w) patch grid; no state-dict entries."""

    def __init__(self, head_dim: int, max_len: int):
        super().__init__()
        self.head_dim, self.max_len = head_dim, max_len
        hw = head_dim // 6
        self.split = (head_dim // 2 - 2 * hw, hw, hw)
        cos, sin = rope_tables(head_dim, max_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _apply(self, fn, recurse=True):
        # Keep the tables fp32 whatever the model is cast to (diffusers keeps `rope` in fp32),
        # and rebuild them after a move off the meta device (`to_empty`).
        super()._apply(fn, recurse)
        cos, sin = rope_tables(self.head_dim, self.max_len)
        self.cos, self.sin = cos.to(self.cos.device), sin.to(self.sin.device)
        return self

    def forward(self, f, h, w) -> tuple[torch.Tensor, torch.Tensor]:
        """-> cos, sin, each (L, K/2) with L = f*h*w in (frame, row, column) order."""
        return self._grid(self.cos, f, h, w), self._grid(self.sin, f, h, w)

    def _grid(self, table: torch.Tensor, f, h, w) -> torch.Tensor:
        tf, th, tw = table.split(self.split, dim=1)  # (M, K/2) -> 3 x (M, k_axis)
        parts = [
            tf[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
            th[:h].view(1, h, 1, -1).expand(f, h, w, -1),
            tw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ]
        return torch.cat(parts, dim=-1).reshape(f * h * w, -1)


class TileOrder(NamedTuple):
    """Tokens reordered for sparse attention: each token's raster index and the attention plan."""

    pos: torch.Tensor  # (L,) raster index of each token, in the order the tokens are in
    plan: object  # vdrt.sparse.Plan


class WanSelfAttention(nn.Module):
    """Self-attention with RMSNorm over all heads on q and k, then rope."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1))  # (B, L, D) -> (B, L, N, K)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, grid, tiles=None) -> torch.Tensor:
        """(B, L, D), (L, K/2) x2, (f, h, w) -> (B, L, D); q/k norm + rope through one swappable op.

        `tiles` (a `TileOrder`): the tokens are in sparse attention's tile order (cos/sin follow them)."""
        pos, plan = (tiles.pos, tiles.plan) if tiles is not None else (None, None)
        (wq, eps), (wk, _) = self._norm(self.norm_q), self._norm(self.norm_k)
        # norm + rope of q and k, then attention; under 8-bit attention the rope kernel quantises q and k
        out = ops.rope_attention(self.q(x), self.k(x), self.heads(self.v(x)), wq, wk, eps, cos, sin, self.num_heads,
                                 grid, pos, plan)
        return self.o(out.flatten(2))

    @staticmethod
    def _norm(norm) -> tuple:
        """(weight, eps) of a q/k RMSNorm, (None, 1e-6) without one."""
        return (norm.weight, norm.eps) if isinstance(norm, RMSNorm) else (None, 1e-6)


class WanCrossAttention(WanSelfAttention):
    """Attention to the text tokens, plus (I2V) a separate attention to the image tokens."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, image: bool):
        super().__init__(dim, num_heads, qk_norm, eps)
        if image:
            self.k_img, self.v_img = Linear(dim, dim), Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x, context, image=None) -> torch.Tensor:
        """(B, L, D), (B, T, D), (B, I, D) | None -> (B, L, D)."""
        q = self.heads(self.norm_q(self.q(x)))
        k, v = self.heads(self.norm_k(self.k(context))), self.heads(self.v(context))
        out = ops.attention(q, k, v).flatten(2)
        if image is not None:
            k_img, v_img = self.heads(self.norm_k_img(self.k_img(image))), self.heads(self.v_img(image))
            out = out + ops.attention(q, k_img, v_img).flatten(2)
        return self.o(out)


class WanBlock(nn.Module):
    """One DiT block: modulated self-attention, cross-attention, modulated FFN (gated, fp32 residual)."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, cross_attn_norm: bool,
                 qk_norm: bool, image: bool):
        super().__init__()
        self.eps = eps
        self.self_attn = WanSelfAttention(dim, num_heads, qk_norm, eps)
        self.norm3 = LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.cross_attn = WanCrossAttention(dim, num_heads, qk_norm, eps, image)
        self.ffn = nn.Sequential(Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x, e0, context, image, cos, sin, grid, tiles=None) -> torch.Tensor:
        """(B, L, D), (B, 6, D), (B, T, D), (B, I, D) | None, (L, K/2) x2, (f, h, w) -> (B, L, D)."""
        mods = (self.modulation + e0.float()).chunk(6, dim=1)  # 6 x (B, 1, D), fp32
        if fp8.active(x):
            return self._forward_fp8(x, mods, context, image, cos, sin, grid, tiles)
        shift, scale, gate, c_shift, c_scale, c_gate = mods
        y = self.self_attn(ops.adaln_modulate(x, shift, scale, self.eps), cos, sin, grid, tiles)
        x = (x.float() + y * gate).to(x.dtype)
        x = x + self.cross_attn(self.norm3(x), context, image)
        y = self.ffn(ops.adaln_modulate(x, c_shift, c_scale, self.eps))
        return (x.float() + y.float() * c_gate).to(x.dtype)

    def _forward_fp8(self, x, mods, context, image, cos, sin, grid, tiles) -> torch.Tensor:
        """forward with producer-fed fp8 (vdrt/models/fp8.py): the adaLN kernel writes q/k/v's and FFN-in's
        e4m3 input once; GELU + quantize writes FFN-out's. The rest is forward's code."""
        shift, scale, gate, c_shift, c_scale, c_gate = mods
        y = self.self_attn(fp8.modulate(x, shift, scale, self.eps), cos, sin, grid, tiles)
        x = (x.float() + y * gate).to(x.dtype)
        x = x + self.cross_attn(self.norm3(x), context, image)
        h = self.ffn[0](fp8.modulate(x, c_shift, c_scale, self.eps))  # (B, L, D) e4m3 -> (B, L, F)
        y = self.ffn[2](fp8.gelu(h))  # (B, L, F) e4m3 -> (B, L, D)
        return (x.float() + y.float() * c_gate).to(x.dtype)

    def attn_input(self, x: torch.Tensor, e0: torch.Tensor) -> torch.Tensor:
        """(B, L, D), (B, 6, D) -> (B, L, D): the modulated input of self-attention (step caching's probe)."""
        shift, scale = (self.modulation + e0.float()).chunk(6, dim=1)[:2]
        return ops.adaln_modulate(x, shift, scale, self.eps)


class PatchEmbed(nn.Module):
    """Conv3d with stride == kernel, computed as patchify + `ops.linear` (swappable, ONNX-plain).

    The weight keeps Conv3d's shape (D, C, pt, ph, pw), so checkpoints load unchanged.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: tuple[int, int, int]):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.weight = nn.Parameter(torch.empty(dim, in_channels, *self.patch_size))
        self.bias = nn.Parameter(torch.empty(dim))
        fan_in = in_channels * math.prod(self.patch_size)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv3d
        nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, f*h*w, D)."""
        b, c, nf, nh, nw = x.shape
        pt, ph, pw = self.patch_size
        x = x.reshape(b, c, nf // pt, pt, nh // ph, ph, nw // pw, pw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4).flatten(1, 3)  # (B, L, C*pt*ph*pw)
        return ops.linear(x, self.weight.flatten(1), self.bias)


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) -> (B, dim) fp32 [cos | sin], as diffusers' Timesteps(flip_sin_to_cos=True, shift=0)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device)
    args = t[:, None].float() * torch.exp(exponent / half)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class WanImageEmbedding(nn.Module):
    """CLIP image tokens -> model dim: LayerNorm, Linear, GELU, Linear, LayerNorm (img_emb.proj.0-4)."""

    def __init__(self, image_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            LayerNorm(image_dim, 1e-5, elementwise_affine=True),
            Linear(image_dim, image_dim),
            nn.GELU(),
            Linear(image_dim, dim),
            LayerNorm(dim, 1e-5, elementwise_affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, I, image_dim) -> (B, I, D)


class WanHead(nn.Module):
    """Final modulated norm and projection to patch pixels: (B, L, D), (B, D) -> (B, L, pt*ph*pw*C)."""

    def __init__(self, dim: int, out_features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.head = Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation + temb.unsqueeze(1)).chunk(2, dim=1)  # 2 x (B, 1, D)
        return self.head(ops.adaln_modulate(x, shift, scale, self.eps))
