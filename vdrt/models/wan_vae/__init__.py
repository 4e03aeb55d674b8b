"""vdrt's own Wan2.1 VAE (3D causal conv VAE, z_dim 16): loads diffusers' AutoencoderKLWan weights unchanged,
decodes the clip in a few large chunked calls, and has a fast bf16 / channels-last / compiled path."""
from vdrt.models.wan_vae.config import WanVAEConfig
from vdrt.models.wan_vae.model import WanVAE

__all__ = ["WanVAEConfig", "WanVAE"]
