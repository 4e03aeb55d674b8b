"""Loading the Wan VAE: a diffusers AutoencoderKLWan directory (config.json + safetensors), or random weights.

    vae = load_wan_vae("Wan2.1-T2V-1.3B-Diffusers/vae", dtype="bfloat16", device="cuda")
    z = vae.normalize(vae.encode(video))        # (B, 3, T, H, W) -> (B, 16, F, h, w), the DiT's latent space
    video = vae.decode(vae.denormalize(z))       # and back, clamped to [-1, 1]
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from vdrt.checkpoint import check_state_dict, read_state_dict
from vdrt.errors import CheckpointError
from vdrt.models.wan_vae.config import WanVAEConfig
from vdrt.models.wan_vae.fast import DTYPES, FastOptions, FastWanVAE
from vdrt.models.wan_vae.model import WanVAE

log = logging.getLogger(__name__)


def default_options(dtype, device) -> FastOptions:
    """bf16 (or the given dtype), channels-last and sub-pixel upsampling on CUDA; plain layouts on CPU."""
    name = dtype if isinstance(dtype, str) else {v: k for k, v in DTYPES.items()}.get(dtype, str(dtype))
    cuda = torch.device(device).type == "cuda"
    return FastOptions(dtype=name, channels_last=cuda, cudnn_benchmark=cuda)


def vae_directory(path) -> Path:
    """A diffusers VAE folder, or a pipeline folder holding one in `vae/`."""
    path = Path(path)
    for d in (path, path / "vae"):
        if (d / "config.json").is_file():
            return d
    raise CheckpointError(f"{path} is not a diffusers VAE directory (no config.json in it or in {path / 'vae'})")


def read_config(directory: Path) -> WanVAEConfig:
    try:
        raw = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: cannot read it as JSON ({e})") from e
    cls = raw.get("_class_name", "AutoencoderKLWan")
    if cls != "AutoencoderKLWan":
        raise CheckpointError(f"{directory} holds a {cls}, not an AutoencoderKLWan; point at the Wan VAE folder")
    return WanVAEConfig.from_diffusers(raw)


def load_wan_vae(path, dtype="bfloat16", device="cuda", options: FastOptions | None = None) -> FastWanVAE:
    """A diffusers AutoencoderKLWan directory -> FastWanVAE on `device` (weights read with safetensors)."""
    directory = vae_directory(path)
    cfg = read_config(directory)
    state = read_state_dict(directory)
    with torch.device("meta"):
        model = WanVAE(cfg)
    check_state_dict(model, state, str(directory))
    model.load_state_dict(state, assign=True)
    log.info("loaded the Wan VAE from %s (%d tensors)", directory, len(state))
    return FastWanVAE(model.to(device), options or default_options(dtype, device))


def random_wan_vae(name: str = "wan2.1-vae", seed: int = 0, dtype="bfloat16", device="cpu",
                   options: FastOptions | None = None, **overrides) -> FastWanVAE:
    """A randomly initialised Wan VAE (PyTorch's default init, seeded), for presets without weights."""
    cfg = WanVAEConfig.from_name(name, **overrides)
    log.info("Wan VAE %s with RANDOM weights (seed %d)", name, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanVAE(cfg)
    return FastWanVAE(model.to(device), options or default_options(dtype, device))
