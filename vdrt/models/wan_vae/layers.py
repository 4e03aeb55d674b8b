"""Layers of the Wan2.1 VAE, with diffusers' parameter names, run over time in chunks of any size.

Time is causal: a conv's output frame t sees input frames <= t, with zero frames before the clip.
Layers that look back keep a history in `state` (a dict keyed by each layer's `key`, its module
path): the last input frames of the previous chunk. One call over the whole clip and any split of
it into chunks give the same result; diffusers' frame-by-frame loop is the split into single
frames. Wan's first-frame rule is kept: at the start of the clip, frame 0 is neither doubled by a
temporal upsample (decoder) nor merged by a temporal downsample (encoder).

Shapes: (B, C, T, H, W) everywhere; works in any float dtype and in channels_last_3d.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

State = dict  # {layer key: (B, C, n, H, W) history frames}
CONV_IMPLS = ("conv3d", "taps2d")


def frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W); a view for channels_last_3d (B = 1)."""
    return x.transpose(1, 2).flatten(0, 1)


def unframes(f: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W); a view for channels_last f."""
    return f.unflatten(0, (batch, -1)).transpose(1, 2)


def history(state: State, key: str, like: torch.Tensor, n: int, dtype: torch.dtype,
            fmt: torch.memory_format | None = None) -> torch.Tensor:
    """The previous chunk's last n input frames of layer `key`; zeros at the clip start: (B, C, n, H, W)."""
    prev = state.get(key)
    if prev is None:
        b, c, _, h, w = like.shape
        return torch.empty((b, c, n, h, w), dtype=dtype, device=like.device,
                           memory_format=fmt or torch.contiguous_format).zero_()
    return prev.to(dtype)


def keep_format(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """y in like's memory format (a no-op in eager; under Inductor it pins a conv input's layout)."""
    cl = like.dim() == 5 and like.is_contiguous(memory_format=torch.channels_last_3d) and not like.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last_3d if cl else torch.contiguous_format)


def norm_silu_history(x: torch.Tensor, gamma: torch.Tensor, scale: float, prev: torch.Tensor) -> torch.Tensor:
    """cat(prev, silu(rmsnorm(x))) in prev's dtype: (B, C, T, H, W), (B, C, n, H, W) -> (B, C, n + T, H, W).
    The elementwise region before every 3x3x3 conv (one fused kernel when compiled)."""
    wide = torch.promote_types(x.dtype, torch.float32)
    y = F.silu(F.normalize(x.to(wide), dim=1) * scale * gamma.to(wide))
    return keep_format(torch.cat([prev, y.to(prev.dtype)], 2), x)


class CausalConv3d(nn.Conv3d):
    """(B, Ci, T, H, W) -> (B, Co, T, H, W): conv causal in time, zero-padded in space (diffusers'
    WanCausalConv3d, without its F.pad copy: the spatial padding is the conv's own). With `norm`, the
    input is silu(norm(x)) first, fused with the history concatenation."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, causal: bool = True):
        k = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        super().__init__(cin, cout, k, stride=stride, padding=(0, k[1] // 2, k[2] // 2))
        self.time_pad = k[0] - 1 if causal else 0
        self.key = ""
        self.impl = "conv3d"
        self.memory_format: torch.memory_format | None = None  # the input layout to pin (set by prepare)

    def forward(self, x: torch.Tensor, state: State | None = None, norm: "RMSNorm | None" = None) -> torch.Tensor:
        dt = self.weight.dtype
        if self.time_pad:
            prev = history(state, self.key, x, self.time_pad, dt, self.memory_format)
            x = norm.silu_history(x, prev) if norm is not None else torch.cat([prev, x.to(dt)], 2)
            state[self.key] = x[:, :, -self.time_pad:].clone(memory_format=self.memory_format or torch.preserve_format)
        else:
            x = (F.silu(norm(x)) if norm is not None else x).to(dt)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)  # a no-op unless a layer lost the layout
        if self.impl == "taps2d" and self.kernel_size[0] > 1 and self.stride[0] == 1:
            return conv3d_taps2d(x, self.weight, self.bias, self.padding[1:])
        return F.conv3d(x, self.weight, self.bias, self.stride, self.padding)


def conv3d_taps2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding) -> torch.Tensor:
    """A stride-1, time-valid conv3d as one conv2d per time tap over frame views, summed:
    (B, Ci, T + kt - 1, H, W) -> (B, Co, T, H, W)."""
    kt, batch = w.shape[2], x.shape[0]
    t = x.shape[2] - kt + 1
    out = None
    for i in range(kt):
        y = F.conv2d(frames(x[:, :, i:i + t]), w[:, :, i], b if i == kt - 1 else None, padding=padding)
        out = y if out is None else out + y
    return unframes(out, batch)


class RMSNorm(nn.Module):
    """x / ||x||_channels * sqrt(C) * gamma, computed in fp32 or wider (diffusers' WanRMS_norm)."""

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))
        self.fused = None  # a compiled norm_silu_history (FastOptions(compile="regions"))

    def forward(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        g = self.gamma.reshape(-1, *([1] * (x.dim() - 2))) if dim == 1 else self.gamma.reshape(-1)
        wide = torch.promote_types(x.dtype, torch.float32)
        y = F.normalize(x.to(wide), dim=dim) * self.scale * g.to(wide)
        return y.to(x.dtype)

    def silu_history(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """cat(prev, silu(self(x))): see norm_silu_history."""
        return (self.fused or norm_silu_history)(x, self.gamma.view(-1, 1, 1, 1), self.scale, prev)


class ResidualBlock(nn.Module):
    """(B, Ci, T, H, W) -> (B, Co, T, H, W): norm, SiLU, causal conv, twice, plus a (1x1x1) shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = RMSNorm(cin)
        self.conv1 = CausalConv3d(cin, cout, 3)
        self.norm2 = RMSNorm(cout)
        self.conv2 = CausalConv3d(cout, cout, 3)
        self.conv_shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        h = self.conv_shortcut(x)
        x = self.conv1(x, state, norm=self.norm1)
        x = self.conv2(x, state, norm=self.norm2)
        return x + h


class AttentionBlock(nn.Module):
    """(B, C, T, H, W) -> same: single-head self-attention over the H*W positions of each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        dt = self.to_qkv.weight.dtype
        tok = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)  # (B*T, H*W, C); a view in channels_last_3d
        tok = self.norm(tok.to(dt), dim=-1)
        q, k, v = F.linear(tok, self.to_qkv.weight.flatten(1), self.to_qkv.bias).chunk(3, dim=-1)
        o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        o = F.linear(o, self.proj.weight.flatten(1), self.proj.bias)  # (B*T, H*W, C)
        return x + o.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3).to(x.dtype)


def interleave_time(y: torch.Tensor) -> torch.Tensor:
    """(B, 2C, T, H, W) -> (B, C, 2T, H, W), frame 2t + j = channel group j of frame t; one copy, made in
    (B, T, H, W, C) order so a channels_last_3d input gives a channels_last_3d output."""
    b, c2, t, h, w = y.shape
    y = y.permute(0, 2, 3, 4, 1).unflatten(-1, (2, c2 // 2))  # (B, T, H, W, 2, C)
    return y.permute(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, c2 // 2).permute(0, 4, 1, 2, 3)


class Resample(nn.Module):
    """Spatial 2x up/down sampling per frame, with Wan's causal temporal 2x for the *3d modes:
    upsample2d/3d (B, C, T, H, W) -> (B, Co, T' , 2H, 2W); downsample2d/3d -> (B, C, T', H/2, W/2)."""

    MODES = ("upsample2d", "upsample3d", "downsample2d", "downsample3d")

    def __init__(self, dim: int, mode: str, out_dim: int | None = None):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"Resample mode {mode!r} is not one of {self.MODES}")
        self.mode = mode
        up = mode.startswith("up")
        conv = nn.Conv2d(dim, out_dim or dim // 2, 3, padding=1) if up else nn.Conv2d(dim, dim, 3, stride=2)
        # index 1 keeps diffusers' parameter names; its index 0 is the parameter-free upsample / zero pad
        self.resample = nn.Sequential(nn.Identity(), conv)
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), causal=False)
        self.phase_weight = self.phase_bias = None  # set by use_subpixel()
        self.memory_format: torch.memory_format | None = None  # the conv input layout to pin (set by prepare)

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._double_time(x, state)
        if self.mode.startswith("up"):
            return self._up2d(x)
        x = self._down2d(x)
        return self._halve_time(x, state) if self.mode == "downsample3d" else x

    def _double_time(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, 2T, H, W) (2T - 1 at the clip start: frame 0 passes)."""
        head = None
        if self.time_conv.key not in state:  # clip start
            head, x = x[:, :, :1], x[:, :, 1:]
            if x.shape[2] == 0:
                tc = self.time_conv
                state[tc.key] = history(state, tc.key, head, 2, tc.weight.dtype, tc.memory_format)
                return head
        y = interleave_time(self.time_conv(x, state))  # (B, 2C, T, H, W): two output frames per input frame
        return y if head is None else torch.cat([head.to(y.dtype), y], 2)

    def _halve_time(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T', H, W): windows of 3 frames at stride 2; frame 0 passes at the clip
        start (needs odd T there, even T after)."""
        key = self.time_conv.key
        head = x[:, :, :1] if key not in state else None
        xin = x if key not in state else torch.cat([state[key], x], 2)
        state[key] = x[:, :, -1:].clone(memory_format=self.time_conv.memory_format or torch.preserve_format)
        parts = [head] if head is not None else []
        if xin.shape[2] >= 3:
            parts.append(self.time_conv(xin).to(x.dtype))
        return torch.cat(parts, 2)

    def _frames(self, x: torch.Tensor, pad=None) -> torch.Tensor:
        """(B, C, T, H, W) -> (B*T, C, H', W') in the conv's dtype and pinned layout, zero-padded by `pad`."""
        f = frames(x.to(self.resample[1].weight.dtype))
        f = F.pad(f, pad) if pad else f
        return f if self.memory_format is None else f.contiguous(memory_format=self.memory_format)

    def _up2d(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.resample[1]
        f = self._frames(x)
        if self.phase_weight is not None:
            return unframes(upsample_conv_subpixel(f, self.phase_weight, self.phase_bias), x.shape[0])
        f = F.interpolate(f, scale_factor=2.0, mode="nearest-exact")
        return unframes(conv(f), x.shape[0])

    def _down2d(self, x: torch.Tensor) -> torch.Tensor:
        return unframes(self.resample[1](self._frames(x, (0, 1, 0, 1))), x.shape[0])

    @torch.no_grad()
    def use_subpixel(self) -> None:
        """Replace nearest-2x + conv3x3 by one conv2x2 with 4x the outputs (one per output phase) on the
        low-resolution frames: the same linear map, 4/9 of the FLOPs, no upsampled tensor in memory."""
        if not self.mode.startswith("up"):
            raise ValueError("use_subpixel() applies to upsample modes only")
        conv = self.resample[1]
        self.phase_weight = nn.Parameter(phase_weights(conv.weight), requires_grad=False)
        self.phase_bias = nn.Parameter(conv.bias.repeat(4), requires_grad=False)


def phase_weights(w: torch.Tensor) -> torch.Tensor:
    """(Co, Ci, 3, 3) weights of conv3x3(nearest2x(x)) -> (4*Co, Ci, 2, 2): phase (p, q) (output pixel
    (2a+p, 2b+q)) as a 2x2 conv over the input rows/cols it reads, taps that hit the same pixel summed."""
    rows = (((0,), (1, 2)), ((0, 1), (2,)))  # p -> the 3x3 taps falling on input row offsets (0, 1)
    w64 = w.double()
    out = []
    for p in range(2):
        for q in range(2):
            k = torch.stack([torch.stack([w64[:, :, list(r)][:, :, :, list(c)].sum((2, 3)) for c in rows[q]], -1)
                             for r in rows[p]], -2)
            out.append(k)
    return torch.cat(out, 0).to(w.dtype)  # phases major: channel = (2p + q) * Co + c


def upsample_conv_subpixel(f: torch.Tensor, wp: torch.Tensor, bp: torch.Tensor) -> torch.Tensor:
    """(N, Ci, H, W) -> (N, Co, 2H, 2W), equal to conv3x3(nearest2x(f)) with the 3x3 weights `wp` came from."""
    n, _, h, w = f.shape
    fmt = torch.channels_last if f.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    y = F.conv2d(F.pad(f, (1, 1, 1, 1)).contiguous(memory_format=fmt), wp, bp)
    y = y.unflatten(1, (2, 2, -1))  # (N, p, q, Co, H+1, W+1)
    phases = [[y[:, p, q, :, p:p + h, q:q + w] for q in range(2)] for p in range(2)]
    if torch.compiler.is_compiling():  # a pure gather: Inductor fuses it into the consumer
        rows = [torch.stack(r, -1) for r in phases]
        return torch.stack(rows, -3).reshape(n, -1, 2 * h, 2 * w)  # (N, Co, H, p, W, q) -> (N, Co, 2H, 2W)
    out = torch.empty((n, y.shape[3], 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=fmt)
    for p in range(2):
        for q in range(2):
            out[:, :, p::2, q::2] = phases[p][q]  # eager: one pass over the output
    return out
