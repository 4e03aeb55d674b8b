"""Codecs between pixels and the denoiser's latent space.

- `PixelCodec`: pixel-space models (patchify happens inside the denoiser): latents are the
  frames themselves, (3, T, H, W) in [-1, 1].
- `WanVAECodec`: diffusers' `AutoencoderKLWan` (8x spatial, 4x causal temporal compression),
  with Wan's per-channel latent normalisation. diffusers is imported lazily.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentGeometry:
    channels: int
    time_factor: int  # pixels frames per latent frame (after the first, for causal VAEs)
    space_factor: int  # pixels per latent pixel
    multiple: int  # H and W must be multiples of this (space_factor * patch)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(frames, height, width) in pixels -> (C, F, H, W) latents; raises ConfigError if they do not fit."""
        if num_frames < 1 or (num_frames - 1) % self.time_factor:
            need = "any number >= 1" if self.time_factor == 1 else f"4k+1 (e.g. {4 * max(1, num_frames // 4) + 1})"
            raise ConfigError(f"num_frames={num_frames} does not fit this model: it needs {need}")
        for name, v in (("height", height), ("width", width)):
            if v < self.multiple or v % self.multiple:
                raise ConfigError(f"{name}={v} does not fit this model: it needs a positive multiple of {self.multiple}")
        f = (num_frames - 1) // self.time_factor + 1
        return self.channels, f, height // self.space_factor, width // self.space_factor

    def latent_frames(self, k: int) -> int:
        """How many latent frames the first `k` pixel frames fill completely."""
        return (k - 1) // self.time_factor + 1 if k > 0 else 0


class PixelCodec:
    """Identity codec for pixel-space models: (3, T, H, W) in [-1, 1]."""

    def __init__(self, patch: int):
        self.geometry = LatentGeometry(channels=3, time_factor=1, space_factor=1, multiple=patch)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video  # (3, T, H, W)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.clamp(-1, 1)  # (3, T, H, W)


class WanVAECodec:
    """The Wan2.1 VAE (vdrt's own, `vdrt.models.wan_vae`: diffusers' AutoencoderKLWan weights unchanged,
    chunked causal decode, bf16 fast path on CUDA): (3, T, H, W) in [-1, 1] <-> (16, (T-1)/4+1, H/8, W/8)."""

    def __init__(self, vae, patch: int):  # vae: vdrt.models.wan_vae.fast.FastWanVAE
        c = self.config = vae.config
        self.vae = vae
        self.geometry = LatentGeometry(channels=c.z_dim, time_factor=c.time_factor, space_factor=c.space_factor,
                                       multiple=c.space_factor * patch)

    @classmethod
    def from_directory(cls, path, patch: int, dtype=None, device="cpu"):
        """A diffusers-format VAE directory; bf16 on CUDA (the layers that need fp32 stay fp32), fp32 on CPU."""
        from vdrt.models.wan_vae.load import load_wan_vae

        return cls(load_wan_vae(path, dtype=_vae_dtype(dtype, device), device=device), patch)

    @classmethod
    def random(cls, patch: int, base_dim: int = 32, dtype=torch.float32, device="cpu"):
        """A randomly initialised Wan VAE, for presets that come without weights (said in a log line)."""
        from vdrt.models.wan_vae.load import random_wan_vae

        return cls(random_wan_vae("wan2.1-vae", seed=0, dtype=_vae_dtype(dtype, device), device=device,
                                  base_dim=base_dim), patch)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.vae.normalize(self.vae.encode(video[None]).float())[0]  # (3, T, H, W) -> (16, F, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(self.vae.denormalize(latents[None].float()))[0].float()  # -> (3, T, H, W)


def _vae_dtype(dtype, device) -> str:
    """The VAE's precision: fp32 on the CPU or when asked; else bf16 (its fast path keeps the layers that
    need fp32 in fp32: >= 40 dB against the fp32 decode, docs/vae.md)."""
    if torch.device(device).type != "cuda" or dtype == torch.float32:
        return "float32"
    return "bfloat16"
