"""Native conditioning inputs for models trained with conditioning channels.

- vdrt's own format (factorized models with cond_channels = C + 1, e.g. vdrt-tiny):
  cond = [known * keep (C), keep (1)] over all latent frames; zeros for t2v.
- Wan I2V (cond_channels = 20): [mask (4), VAE latents of (image, zeros...) (16)] and CLIP
  image embeddings, built as diffusers' WanImageToVideoPipeline builds them.
Models without conditioning channels get nothing here; the pipeline then pastes the known
latents at every step instead (`replaces_latents`).
"""
from __future__ import annotations

import torch

from vdrt.errors import ConfigError

WAN_NATIVE_MODES = ("i2v",)


def replaces_latents(config, cond) -> bool:
    """True when the pipeline must paste known latents each step (no native path for this mode)."""
    if cond.keep is None:
        return False
    if config.cond_channels == 0:
        return True
    return config.family == "wan" and cond.mode not in WAN_NATIVE_MODES


def latent_paste(config, cond, sampler, shape, generator, device):
    """`paste(i, x)`: the known latents noised to sigma(i + 1) pasted over x where `keep` is 1 (None if not needed).

    For models without native conditioning for this mode. The noise is drawn once per generation, from
    `generator` (after the initial noise); `paste(start - 1, x)` gives the starting latents, and the
    loop's `on_step_end` pastes after every step, the last one at sigma 0 (the known latents exactly).
    """
    if not replaces_latents(config, cond):
        return None
    noise = torch.randn(shape, generator=generator).to(device)
    known, keep = cond.known.to(device)[None], cond.keep.to(device)

    def paste(i: int, x: torch.Tensor) -> torch.Tensor:
        return keep * sampler.add_noise(known, noise, i + 1) + (1 - keep) * x
    return paste


def inputs(config, cond, shape, codec, image_encoder=None, image_embeds=None) -> dict:
    """Extra denoiser inputs for latents of `shape` (C, F, h, w), each with a batch dim of 1."""
    if config.cond_channels == 0:
        return {}
    if config.family == "wan":
        return _wan_inputs(config, cond, shape, codec, image_encoder, image_embeds)
    return {"cond": _masked_known(config, cond, shape)}


def _masked_known(config, cond, shape) -> torch.Tensor:
    c = config.in_channels
    if config.cond_channels != c + 1:
        raise ConfigError(f"cond_channels={config.cond_channels} is not vdrt's [known ({c}), keep (1)] layout")
    if cond.keep is None:
        return torch.zeros(1, c + 1, *shape[1:])
    return torch.cat([cond.known * cond.keep, cond.keep])[None]  # (1, C+1, F, h, w)


def _wan_inputs(config, cond, shape, codec, image_encoder, image_embeds) -> dict:
    if cond.mode not in WAN_NATIVE_MODES or cond.first_image is None:
        zeros = torch.zeros(1, config.cond_channels, *shape[1:])
        return {"cond": zeros, **_image_embeds(config, None, image_encoder, image_embeds, required=False)}
    f, h, w = shape[1:]
    num_frames = (f - 1) * codec.geometry.time_factor + 1
    video = torch.zeros(3, num_frames, *cond.first_image.shape[-2:])
    video[:, 0] = cond.first_image
    latent = codec.encode(video).float()  # (16, F, h, w)
    mask = torch.zeros(1, num_frames + codec.geometry.time_factor - 1, h, w)
    mask[:, : codec.geometry.time_factor] = 1  # the first frame, repeated for the causal latent frame
    mask = mask.view(1, f, codec.geometry.time_factor, h, w).transpose(1, 2)[0]  # (4, F, h, w)
    cond_t = torch.cat([mask, latent])[None]
    return {"cond": cond_t, **_image_embeds(config, cond.first_image, image_encoder, image_embeds, required=True)}


def _image_embeds(config, image, image_encoder, image_embeds, required: bool) -> dict:
    if config.image_dim is None:
        return {}
    if image_embeds is not None:
        e = torch.as_tensor(image_embeds).float()
        return {"image_embeds": e if e.dim() == 3 else e[None]}
    if image_encoder is not None and image is not None:
        return {"image_embeds": image_encoder([image]).float()}
    if required:
        raise ConfigError("this Wan I2V model needs CLIP image embeddings: use a diffusers directory with "
                          "image_encoder/, or pass image_embeds=")
    return {"image_embeds": torch.zeros(1, 257, config.image_dim)}
