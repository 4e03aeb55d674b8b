"""The Wan2.1 VAE: encoder and decoder of causal 3D convs, with diffusers' AutoencoderKLWan parameter names.

`WanVAE.load_state_dict` takes diffusers' state dict unchanged. Encode and decode run over time in
chunks (`encode_chunk` / `decode_chunk` with a `state` dict carrying each causal layer's history);
any chunk plan gives the same result (see layers.py), diffusers' frame-by-frame loop included.

    encode: (B, 3, T, H, W) in [-1, 1], T = 4k + 1 -> (B, z, (T - 1) / 4 + 1, H / 8, W / 8) (the posterior mean)
    decode: (B, z, F, h, w) -> (B, 3, 4 (F - 1) + 1, 8 h, 8 w), clamped to [-1, 1]
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdrt.errors import ConfigError
from vdrt.models.wan_vae.config import WanVAEConfig
from vdrt.models.wan_vae.layers import AttentionBlock, CausalConv3d, Resample, ResidualBlock, RMSNorm, State


class MidBlock(nn.Module):
    """(B, C, T, H, W) -> same: residual block, per-frame attention, residual block."""

    def __init__(self, dim: int):
        super().__init__()
        first = ResidualBlock(dim, dim)  # built in diffusers' order: the same seed gives the same weights
        self.attentions = nn.ModuleList([AttentionBlock(dim)])
        self.resnets = nn.ModuleList([first, ResidualBlock(dim, dim)])

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        x = self.resnets[0](x, state)
        return self.resnets[1](self.attentions[0](x), state)


class UpBlock(nn.Module):
    """(B, Ci, T, H, W) -> (B, Co', T', H', W'): residual blocks, then an optional upsampler."""

    def __init__(self, cin: int, cout: int, num_res_blocks: int, upsample_mode: str | None):
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(cin if i == 0 else cout, cout) for i in range(num_res_blocks + 1)])
        self.upsamplers = nn.ModuleList([Resample(cout, upsample_mode)]) if upsample_mode else None

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, state)
        return self.upsamplers[0](x, state) if self.upsamplers is not None else x


class Encoder3d(nn.Module):
    """(B, 3, T, H, W) -> (B, 2z, T', H/8, W/8)."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = CausalConv3d(cfg.in_channels, dims[0], 3)
        self.down_blocks = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                self.down_blocks.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(cfg.dim_mult) - 1:
                mode = "downsample3d" if cfg.temperal_downsample[i] else "downsample2d"
                self.down_blocks.append(Resample(cout, mode))
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], cfg.z_dim * 2, 3)

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        x = self.conv_in(x, state)
        for layer in self.down_blocks:
            x = layer(x, state)
        return self.conv_out(self.mid_block(x, state), state, norm=self.norm_out)


class Decoder3d(nn.Module):
    """(B, z, F, h, w) -> (B, 3, T, 8h, 8w)."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.decoder_dim * m for m in (mult[-1], *mult[::-1])]
        up_time = cfg.temperal_downsample[::-1]
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], 3)
        self.mid_block = MidBlock(dims[0])
        self.up_blocks = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            cin = cin // 2 if i > 0 else cin  # Wan2.1: each upsampler halves the channels
            mode = None if i == len(mult) - 1 else ("upsample3d" if up_time[i] else "upsample2d")
            self.up_blocks.append(UpBlock(cin, cout, cfg.num_res_blocks, mode))
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], cfg.out_channels, 3)

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        x = self.mid_block(self.conv_in(x, state), state)
        for block in self.up_blocks:
            x = block(x, state)
        return self.conv_out(x, state, norm=self.norm_out)


class DecodePart(nn.Module):
    """post_quant_conv + decoder of a WanVAE (shared modules, diffusers' names): one chunk, (B, z, f, h, w) ->
    (B, 3, t, 8h, 8w), not clamped. The unit torch.compile and AOTI see (no encoder weights in it)."""

    def __init__(self, vae: "WanVAE"):
        super().__init__()
        self.post_quant_conv, self.decoder = vae.post_quant_conv, vae.decoder

    def forward(self, z: torch.Tensor, state: State) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z), state)


class EncodePart(nn.Module):
    """encoder + quant_conv of a WanVAE: one chunk, (B, 3, t, H, W) -> (B, z, t', H/8, W/8), the posterior
    mean (quant_conv's first z outputs only)."""

    def __init__(self, vae: "WanVAE"):
        super().__init__()
        self.encoder, self.quant_conv, self.z_dim = vae.encoder, vae.quant_conv, vae.config.z_dim

    def forward(self, x: torch.Tensor, state: State) -> torch.Tensor:
        h, q, z = self.encoder(x, state), self.quant_conv, self.z_dim
        return F.conv3d(h.to(q.weight.dtype), q.weight[:z], q.bias[:z])


class WanVAE(nn.Module):
    """Encoder + decoder; parameter names are diffusers' AutoencoderKLWan's."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder3d(cfg)
        self.quant_conv = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.post_quant_conv = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)
        for name, m in self.named_modules():
            if isinstance(m, CausalConv3d):
                m.key = name

    def part(self, encode: bool) -> nn.Module:
        """The EncodePart or DecodePart of this VAE (kept outside the module tree: parameter names stay diffusers')."""
        name = "_encode_part" if encode else "_decode_part"
        if name not in self.__dict__:
            object.__setattr__(self, name, EncodePart(self) if encode else DecodePart(self))
        return self.__dict__[name]

    def encode_chunk(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """(B, 3, t, H, W) -> (B, z, t', H/8, W/8): see EncodePart."""
        return self.part(True)(x, state)

    def decode_chunk(self, z: torch.Tensor, state: State) -> torch.Tensor:
        """(B, z, f, h, w) -> (B, 3, t, 8h, 8w), not clamped: see DecodePart."""
        return self.part(False)(z, state)

    # --- a whole clip ---------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, z, F, h, w); `chunk` latent frames per call after frame 0 (None: all)."""
        check_video(self.config, x)
        state: State = {}
        sizes = chunk_sizes(latent_frames(self.config, x.shape[2]), chunk)
        bounds = pixel_bounds(self.config, sizes)
        return torch.cat([self.encode_chunk(x[:, :, a:b], state) for a, b in bounds], 2)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """(B, z, F, h, w) -> (B, 3, T, H, W) in [-1, 1]; `chunk` latent frames per call after frame 0."""
        check_latents(self.config, z)
        state: State = {}
        outs, start = [], 0
        for n in chunk_sizes(z.shape[2], chunk):
            outs.append(self.decode_chunk(z[:, :, start:start + n], state))
            start += n
        return torch.cat(outs, 2).clamp(-1, 1)


def chunk_sizes(num_latent: int, chunk: int | None) -> list[int]:
    """Latent frames per call: frame 0 alone, then `chunk` at a time (the last may be shorter); None: one call."""
    if chunk is None:
        return [num_latent]
    if chunk < 1:
        raise ConfigError(f"chunk={chunk}: the number of latent frames per call must be >= 1")
    rest = num_latent - 1
    return [1] + [min(chunk, rest - i) for i in range(0, rest, chunk)]


def pixel_bounds(cfg: WanVAEConfig, sizes: list[int]) -> list[tuple[int, int]]:
    """Latent chunk sizes -> the pixel frame ranges they encode from (the first latent frame is 1 pixel frame)."""
    bounds, start = [], 0
    for i, n in enumerate(sizes):
        stop = start + n * cfg.time_factor - (cfg.time_factor - 1 if i == 0 else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def latent_frames(cfg: WanVAEConfig, num_frames: int) -> int:
    return (num_frames - 1) // cfg.time_factor + 1


def check_video(cfg: WanVAEConfig, x: torch.Tensor) -> None:
    """Refuse a video the encoder cannot take, before any work."""
    if x.dim() != 5 or x.shape[1] != cfg.in_channels:
        raise ConfigError(f"VAE encode takes (B, {cfg.in_channels}, T, H, W) video, got shape {tuple(x.shape)}")
    t, h, w = x.shape[2:]
    tf, sf = cfg.time_factor, cfg.space_factor
    if t < 1 or (t - 1) % tf:
        raise ConfigError(f"VAE encode: {t} frames; the causal VAE takes {tf}k+1 frames "
                          f"(e.g. {tf * max(1, t // tf) + 1})")
    if h < sf or w < sf or h % sf or w % sf:
        raise ConfigError(f"VAE encode: frame size {h}x{w}; height and width must be positive multiples of {sf}")
    _check_values(x, "video")


def check_latents(cfg: WanVAEConfig, z: torch.Tensor) -> None:
    """Refuse latents the decoder cannot take, before any work."""
    if z.dim() != 5:
        raise ConfigError(f"VAE decode takes (B, {cfg.z_dim}, F, h, w) latents, got shape {tuple(z.shape)}")
    if z.shape[1] != cfg.z_dim:
        raise ConfigError(f"VAE decode: latents have {z.shape[1]} channels, this VAE's z_dim is {cfg.z_dim}")
    if min(z.shape[2:]) < 1:
        raise ConfigError(f"VAE decode: empty latents {tuple(z.shape)}; need at least 1 frame of 1x1")
    _check_values(z, "latents")


def _check_values(t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        raise ConfigError(f"VAE: {what} must be a floating tensor, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"VAE: {what} hold NaN or Inf; check the sampler output")
