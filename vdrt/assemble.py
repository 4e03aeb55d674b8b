"""Assemble a pipeline's parts (engine, codec, text encoder, defaults) from one source.

Sources: an engine directory (manifest.json), a diffusers Wan directory (model_index.json),
a vdrt or diffusers denoiser directory (config.json), an embedded model, or a preset.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Defaults:
    """What a generate call uses when the caller does not say."""

    num_frames: int = 17
    height: int = 64
    width: int = 64
    num_steps: int = 4
    guidance: float = 1.0
    sampler: str = "euler"
    shift: float = 1.0
    fps: int = 8
    sampler_timesteps: tuple = ()  # for few-step samplers: the distilled timesteps
    trained_size: tuple | None = None  # (frames, height, width) an embedded model was trained at; others refused

    def check_size(self, name: str) -> None:
        from vdrt.errors import ConfigError

        if self.trained_size and (self.num_frames, self.height, self.width) != tuple(self.trained_size):
            f, h, w = self.trained_size
            raise ConfigError(f"{name} was trained at {f} frames of {w}x{h} only; asked for {self.num_frames} "
                              f"frames of {self.width}x{self.height}. Use --frames {f} --height {h} --width {w}")

    def replace(self, **kw) -> "Defaults":
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


WAN_DEFAULTS = {
    "wan-tiny": Defaults(num_frames=17, height=128, width=128, num_steps=4, guidance=5.0, sampler="unipc", shift=5.0,
                         fps=16),
    "wan": Defaults(num_frames=81, height=480, width=832, num_steps=50, guidance=5.0, sampler="unipc", shift=5.0,
                    fps=16),
}


@dataclass
class Parts:
    engine: object
    codec: object
    text_encoder: object
    defaults: Defaults
    image_encoder: object = None
    name: str = ""


def assemble(source, dtype=None, device=None, cuda_graphs: bool = False, trust_pickle: bool = False) -> Parts:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    path = Path(str(source)).expanduser()
    if path.is_dir() and (path / "manifest.json").is_file():
        return _from_engine_dir(path, device, cuda_graphs)
    if path.is_dir() and (path / "model_index.json").is_file():
        return _from_diffusers_pipeline(path, dtype, device, cuda_graphs, trust_pickle)
    from vdrt import embedded

    if str(source) in embedded.names():
        from vdrt.embedded_pipeline import parts_for_embedded

        return parts_for_embedded(str(source), dtype, device, cuda_graphs)
    return _from_denoiser(source, dtype, device, cuda_graphs, trust_pickle)


def _engine(module, cuda_graphs: bool):
    from vdrt.engines.torch import TorchEngine

    return TorchEngine(module, cuda_graphs=cuda_graphs)


def _from_denoiser(source, dtype, device, cuda_graphs, trust_pickle) -> Parts:
    from vdrt.loader import load_denoiser

    den = load_denoiser(source, dtype=dtype, device=device, trust_pickle=trust_pickle)
    cfg = den.config
    codec = codec_for(cfg, dtype, device)
    name = str(source)
    return Parts(_engine(den, cuda_graphs), codec, _placeholder_text(cfg), defaults_for(cfg, name), name=name)


def codec_for(cfg, dtype, device, vae_dir: Path | None = None):
    from vdrt.codecs import PixelCodec, WanVAECodec

    patch = cfg.patch_size[-1]
    if cfg.in_channels == 3:
        return PixelCodec(patch)
    if cfg.family == "wan":
        if vae_dir is not None:
            return WanVAECodec.from_directory(vae_dir, patch, dtype=torch.float32, device=device)
        return WanVAECodec.random(patch, device=device)
    raise ConfigError(f"a {cfg.family} model with {cfg.in_channels} latent channels needs a VAE to make video; "
                      "use a diffusers directory with vae/, or call the denoiser directly (vdrt.load_denoiser)")


def defaults_for(cfg, name: str) -> Defaults:
    if cfg.family == "wan":
        return WAN_DEFAULTS["wan-tiny" if "tiny" in name else "wan"]
    return Defaults()


def _placeholder_text(cfg):
    from vdrt.encoders import HashTextEncoder

    log.info("text: placeholder hashed-word encoder (random-weight model; prompts carry no learned meaning)")
    return HashTextEncoder(cfg.text_dim)


def _from_diffusers_pipeline(root: Path, dtype, device, cuda_graphs, trust_pickle) -> Parts:
    from vdrt.encoders import UMT5TextEncoder
    from vdrt.loader import load_denoiser

    den = load_denoiser(root, dtype=dtype, device=device, trust_pickle=trust_pickle)
    cfg = den.config
    codec = codec_for(cfg, dtype, device, vae_dir=root / "vae" if (root / "vae").is_dir() else None)
    text = UMT5TextEncoder(root, max_len=cfg.text_len, device=device) if (root / "text_encoder").is_dir() else None
    image_encoder = _clip_encoder(root, device) if (root / "image_encoder").is_dir() else None
    return Parts(_engine(den, cuda_graphs), codec, text, defaults_for(cfg, root.name), image_encoder, str(root))


def _clip_encoder(root: Path, device):
    from vdrt.image_encoders import ClipImageEncoder

    return ClipImageEncoder(root, device=device)


def _from_engine_dir(path: Path, device, cuda_graphs: bool = False) -> Parts:
    from vdrt import embedded, models
    from vdrt.engines import load_engine

    engine = load_engine(path, device=device, cuda_graphs=cuda_graphs)
    cfg = models.config_from_dict(engine.manifest["model_config"])
    source = engine.manifest.get("build", {}).get("options", {}).get("source")
    if source in embedded.names():  # built from an embedded model: its own text encoder and defaults
        from vdrt.embedded_pipeline import text_and_defaults

        text, defaults = text_and_defaults(source, device)
    else:
        text, defaults = _placeholder_text(cfg), defaults_for(cfg, str(path))
    return Parts(engine, codec_for(cfg, None, device), text, defaults, name=str(path))
