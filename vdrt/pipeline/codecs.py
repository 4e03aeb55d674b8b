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
    """AutoencoderKLWan: (3, T, H, W) in [-1, 1] <-> (16, (T-1)/4+1, H/8, W/8), normalised."""

    def __init__(self, vae, patch: int):
        self.vae = vae
        self.geometry = LatentGeometry(channels=vae.config.z_dim, time_factor=vae.config.scale_factor_temporal or 4,
                                       space_factor=vae.config.scale_factor_spatial or 8,
                                       multiple=(vae.config.scale_factor_spatial or 8) * patch)
        self.mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)

    @classmethod
    def from_directory(cls, path, patch: int, dtype=torch.float32, device="cpu"):
        from vdrt.errors import require

        require("diffusers")
        from diffusers import AutoencoderKLWan

        return cls(AutoencoderKLWan.from_pretrained(str(path), torch_dtype=dtype).to(device).eval(), patch)

    @classmethod
    def random(cls, patch: int, base_dim: int = 32, dtype=torch.float32, device="cpu"):
        """A randomly initialised Wan VAE, for presets that come without weights (said in a log line)."""
        from vdrt.errors import require

        require("diffusers")
        from diffusers import AutoencoderKLWan

        log.info("no VAE with this model: decoding with a RANDOMLY initialised AutoencoderKLWan (base_dim %d)", base_dim)
        torch.manual_seed(0)
        vae = AutoencoderKLWan(base_dim=base_dim).to(device)  # built in fp32; cast only when asked (diffusers warns)
        return cls((vae if dtype == torch.float32 else vae.to(dtype)).eval(), patch)

    def _vae_dtype(self):
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        x = video.unsqueeze(0).to(self._vae_dtype())  # (1, 3, T, H, W)
        z = self.vae.encode(x).latent_dist.mode()
        return ((z - self.mean.to(z)) / self.std.to(z))[0]  # (16, F, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.unsqueeze(0).to(self._vae_dtype())
        z = z * self.std.to(z) + self.mean.to(z)
        return self.vae.decode(z).sample[0].clamp(-1, 1)  # (3, T, H, W)
