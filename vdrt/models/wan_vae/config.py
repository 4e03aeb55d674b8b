"""The Wan2.1 VAE's config: a frozen dataclass with presets, read from / written as diffusers' config.json.

Only the Wan2.1 family is built here (3D causal conv VAE, 8x spatial and 4x causal temporal
compression, z_dim 16); Wan2.2's residual VAE (`is_residual`, `patch_size`) and encoder
attention (`attn_scales`) are refused with a clear error.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from vdrt.errors import ConfigError
from vdrt.models.config import ModelConfig

# Wan2.1's per-channel latent statistics (diffusers' AutoencoderKLWan defaults).
WAN21_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
              0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
             3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

# diffusers config keys we read; the rest (tiling, scale factors we derive) must have their default
_UNSUPPORTED = {"is_residual": False, "patch_size": None, "attn_scales": [], "dropout": 0.0}


@dataclasses.dataclass(frozen=True)
class WanVAEConfig(ModelConfig):
    family: ClassVar[str] = "wan-vae"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "wan2.1-vae": {},
        # small channel counts, same structure: CPU tests and the benchmark's tiny rows
        "wan-vae-tiny": {"base_dim": 8, "z_dim": 4, "latents_mean": (0.1, -0.2, 0.3, 0.0),
                         "latents_std": (1.5, 0.8, 2.0, 1.0)},
    }

    base_dim: int = 96
    decoder_base_dim: int | None = None
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # diffusers' spelling, kept
    in_channels: int = 3
    out_channels: int = 3
    latents_mean: tuple[float, ...] = WAN21_MEAN
    latents_std: tuple[float, ...] = WAN21_STD

    def __post_init__(self):
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ConfigError(f"temperal_downsample needs {len(self.dim_mult) - 1} entries (one per down "
                              f"stage), got {len(self.temperal_downsample)}")
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ConfigError(f"latents_mean/latents_std need z_dim={self.z_dim} entries, got "
                              f"{len(self.latents_mean)}/{len(self.latents_std)}")
        if min(self.latents_std) <= 0:
            raise ConfigError("latents_std must be positive")

    @property
    def time_factor(self) -> int:
        return 2 ** sum(self.temperal_downsample)

    @property
    def space_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def decoder_dim(self) -> int:
        return self.decoder_base_dim or self.base_dim

    @classmethod
    def from_diffusers(cls, cfg: dict[str, Any]) -> "WanVAEConfig":
        """From diffusers' AutoencoderKLWan config.json (a dict); refuses what this VAE does not build."""
        for key, default in _UNSUPPORTED.items():
            value = cfg.get(key, default)
            if (list(value) if isinstance(value, (list, tuple)) else value) != default:
                raise ConfigError(f"VAE config {key}={cfg[key]!r} is not supported (only the Wan2.1 VAE is "
                                  f"built here: {key}={default!r}); use diffusers' AutoencoderKLWan for it")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in names}
        cfg_ = cls(**kw)
        _check_scale_factors(cfg_, cfg)
        return cfg_

    def to_diffusers(self) -> dict[str, Any]:
        """Keyword arguments for diffusers' AutoencoderKLWan (tests build the peer from them)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {**d, "attn_scales": [], "scale_factor_temporal": self.time_factor,
                "scale_factor_spatial": self.space_factor}


def _check_scale_factors(cfg: WanVAEConfig, raw: dict[str, Any]) -> None:
    for key, derived in (("scale_factor_temporal", cfg.time_factor), ("scale_factor_spatial", cfg.space_factor)):
        given = raw.get(key)
        if given is not None and given != derived:
            raise ConfigError(f"VAE config {key}={given} disagrees with the layer structure ({derived}); "
                              "the config.json is inconsistent")
