"""Building blocks of the factorized (Latte-style) DiT: embeddings, attentions, blocks.

Tokens stay in one layout from patch embedding to the head: `(B, L, C)` with
`L = F*S` ordered frame-major, so `x.view(B, F, S, C)` is free. Spatial attention views the
projections as `(B*F, S, H, D)`, temporal attention as `(B, F, S, H, D)` (the layout
`vdrt.ops.temporal_attention` takes), cross-attention as `(B, F*S, H, D)` against the text.
Alphabet: B batch, C channels, F frames, S = h*w patches per frame, L tokens, H heads,
D head dim, T text tokens, E text embedding dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vdrt import ops
from vdrt.models import fp8
from vdrt.models.layers import Linear
from vdrt.ops import QuantizedActivation

FREQ_DIM = 256  # width of the sinusoidal timestep features (PixArt / Latte)


# ---------------------------------------------------------------- embeddings


def timestep_features(t: torch.Tensor, dim: int = FREQ_DIM) -> torch.Tensor:
    """(B,) -> (B, dim) float32 [cos | sin], as diffusers' Timesteps(flip_sin_to_cos=True, shift=0)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    args = t.float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """(M,) positions -> (M, dim) float64 [sin | cos] (MAE / diffusers' 1d sincos embedding)."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    out = pos.to(torch.float64)[:, None] * (1.0 / 10000**omega)[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(h: int, w: int, dim: int, base_size: int, interp: float, device=None) -> torch.Tensor:
    """(h, w) patch grid -> (h*w, dim) float32, as PixArt's PatchEmbed (row-major over (h, w)).

    Grid coordinates are rescaled so `base_size` patches span the trained range; the first
    half of the channels encodes the column (w) coordinate, the second the row (h) one.
    """
    gh = torch.arange(h, dtype=torch.float32, device=device) / (h / base_size) / interp
    gw = torch.arange(w, dtype=torch.float32, device=device) / (w / base_size) / interp
    cols = gw[None, :].expand(h, w).reshape(-1)  # (h*w,)
    rows = gh[:, None].expand(h, w).reshape(-1)  # (h*w,)
    return torch.cat([sincos_1d(cols, dim // 2), sincos_1d(rows, dim // 2)], dim=1).float()


class MLP2(nn.Module):
    """linear_1 -> activation -> linear_2 (timestep embedder, caption projection)."""

    def __init__(self, in_dim: int, dim: int, act: str):
        super().__init__()
        self.linear_1 = Linear(in_dim, dim)
        self.linear_2 = Linear(dim, dim)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(activation(self.linear_1(x), self.act))


def activation(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == "silu":
        return F.silu(x)
    return F.gelu(x, approximate="tanh" if act == "gelu_tanh" else "none")


# ---------------------------------------------------------------- norms and feed-forward


class ModulatedNorm(nn.Module):
    """LayerNorm (optionally affine) then `* (1 + scale) + shift`, through `ops.adaln_modulate`."""

    def __init__(self, dim: int, eps: float, affine: bool):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None

    def forward(self, x, shift, scale):
        """(B, L, C), (B, 1, C), (B, 1, C) -> (B, L, C)."""
        return ops.adaln_modulate(x, shift, scale, self.eps, self.weight, self.bias)

    def quantized(self, x, shift, scale) -> QuantizedActivation:
        """The same, written as e4m3 codes + per-token scales (the producer-fed fp8 path)."""
        return fp8.modulate(x, shift, scale, self.eps, self.weight, self.bias)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(activation(self.fc1(x), self.act))

    def forward_quantized(self, x: QuantizedActivation) -> torch.Tensor:
        """forward on a producer-fed input; a tanh GELU also quantizes fc2's input as it writes it."""
        h = self.fc1(x)
        return self.fc2(fp8.gelu(h) if self.act == "gelu_tanh" else activation(h, self.act))


# ---------------------------------------------------------------- attention


class _Attention(nn.Module):
    """q/k/v/out projections; subclasses say how the heads are laid out for the op."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.to_q = Linear(dim, dim, bias=bias)
        self.to_k = Linear(dim, dim, bias=bias)
        self.to_v = Linear(dim, dim, bias=bias)
        self.to_out = Linear(dim, dim)

    def heads(self, y: torch.Tensor, *lead: int) -> torch.Tensor:
        """(..., C) -> (*lead, H, D), a view."""
        return y.view(*lead, self.num_heads, self.head_dim)

    def merge(self, o: torch.Tensor, b: int) -> torch.Tensor:
        """(..., H, D) -> (B, L, C) -> out projection."""
        return self.to_out(o.reshape(b, -1, self.num_heads * self.head_dim))


class SpatialAttention(_Attention):
    """Self-attention over the S patches of each frame."""

    def forward(self, x: torch.Tensor, f: int) -> torch.Tensor:
        b, n, _ = x.shape
        lead = (b * f, n // f)  # (B*F, S)
        q, k, v = (self.heads(p(x), *lead) for p in (self.to_q, self.to_k, self.to_v))
        return self.merge(ops.attention(q, k, v), b)  # (B*F, S, H, D) -> (B, L, C)


class TemporalAttention(_Attention):
    """Self-attention over the F frames of each patch position, via `ops.temporal_attention`."""

    def forward(self, x: torch.Tensor, f: int) -> torch.Tensor:
        b, n, _ = x.shape
        lead = (b, f, n // f)  # (B, F, S): the projection output viewed, no permute
        q, k, v = (self.heads(p(x), *lead) for p in (self.to_q, self.to_k, self.to_v))
        return self.merge(ops.temporal_attention(q, k, v), b)  # (B, F, S, H, D) -> (B, L, C)


class CrossAttention(_Attention):
    """Every token attends to the (already projected) text; per-frame and all-frame are the same."""

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.heads(self.to_q(x), b, n)  # (B, L, H, D)
        k = self.heads(self.to_k(ctx), b, ctx.shape[1])  # (B, T, H, D)
        v = self.heads(self.to_v(ctx), b, ctx.shape[1])
        return self.merge(ops.attention(q, k, v), b)


# ---------------------------------------------------------------- blocks


class Block(nn.Module):
    """adaLN-single transformer block (PixArt / Latte BasicTransformerBlock, "ada_norm_single").

    x += gate1 * attn(mod(norm1(x)));  x += cross(x, text) (spatial only, unnormed, ungated);
    x += gate2 * ffn(mod(norm2(x))).  `modulation` (6, C) is added to the shared timestep
    projection (B, 6, C) to give shift1, scale1, gate1, shift2, scale2, gate2.
    """

    def __init__(self, cfg, temporal: bool):
        super().__init__()
        attn_cls = TemporalAttention if temporal else SpatialAttention
        self.norm1 = ModulatedNorm(cfg.dim, cfg.eps, cfg.norm_affine)
        self.attn = attn_cls(cfg.dim, cfg.num_heads, cfg.qkv_bias)
        self.cross = None if temporal else CrossAttention(cfg.dim, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = ModulatedNorm(cfg.dim, cfg.eps, cfg.norm_affine)
        self.ffn = FeedForward(cfg.dim, cfg.ffn_dim, cfg.ffn_act)
        self.modulation = nn.Parameter(torch.randn(6, cfg.dim) / cfg.dim**0.5)

    def forward(self, x, t6, ctx, f: int):
        """(B, L, C), (B, 6, C), (B, T, C) -> (B, L, C)."""
        if fp8.active(x):
            return self._forward_fp8(x, t6, ctx, f)
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation[None] + t6).chunk(6, dim=1)
        x = x + gate1 * self.attn(self.norm1(x, shift1, scale1), f)
        if self.cross is not None:
            x = x + self.cross(x, ctx)
        return x + gate2 * self.ffn(self.norm2(x, shift2, scale2))

    def _forward_fp8(self, x, t6, ctx, f: int):
        """forward with producer-fed fp8 (vdrt/models/fp8.py): the adaLN writes the e4m3 input of to_q/k/v
        and fc1 once; with a tanh GELU, GELU + quantize writes fc2's. The rest is forward's code."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation[None] + t6).chunk(6, dim=1)
        x = x + gate1 * self.attn(self.norm1.quantized(x, shift1, scale1), f)
        if self.cross is not None:
            x = x + self.cross(x, ctx)
        return x + gate2 * self.ffn.forward_quantized(self.norm2.quantized(x, shift2, scale2))

    def attn_input(self, x: torch.Tensor, t6: torch.Tensor) -> torch.Tensor:
        """(B, L, C), (B, 6, C) -> (B, L, C): the modulated input of the attention (step caching's probe)."""
        shift1, scale1 = (self.modulation[None] + t6).chunk(6, dim=1)[:2]
        return self.norm1(x, shift1, scale1)


class Layer(nn.Module):
    """One spatial block then one temporal block (what diffusers' Latte `num_layers` counts)."""

    def __init__(self, cfg):
        super().__init__()
        self.spatial = Block(cfg, temporal=False)
        self.temporal = Block(cfg, temporal=True)


class Head(nn.Module):
    """Final LayerNorm (eps 1e-6, no affine) modulated by the timestep embedding, then proj."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.modulation = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.proj = Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """(B, L, C), (B, C) -> (B, L, out_dim)."""
        shift, scale = (self.modulation[None] + temb[:, None]).chunk(2, dim=1)
        return self.proj(ops.adaln_modulate(x, shift, scale, 1e-6))
