"""Native conditioning inputs for models trained with conditioning channels.

The layout follows from the config (a card's `cond_layout` must agree: `check_layout`):

| layout | cond_channels | channels | native modes |
| --- | --- | --- | --- |
| vdrt-native-v1 (vdrt-tiny) | C + 1 | [known * keep (C), keep (1)] | keep-mask modes |
| vdrt-native-v2 (vdrt-tiny-wan) | 2 (C + 1) | [known * keep (C), keep (1), hint * has_hint (C), has_hint (1)] | all |
| wan-i2v (Wan2.1 I2V) | 20 | [mask (4), VAE latents of (image, zeros...) (16)] + CLIP image embeddings | i2v |

all over every latent frame; zeros are t2v. `hint` is a clip that guides without fixing (v2v: the input video;
upscale: the low-resolution clip upsampled x2). Wan I2V's inputs are built as diffusers'
WanImageToVideoPipeline builds them. Models without conditioning channels get nothing here; the
pipeline then pastes the known latents at every step instead (`replaces_latents`).
"""
from __future__ import annotations

import torch

from vdrt.errors import CheckpointError, ConfigError

WAN_NATIVE_MODES = ("i2v",)
LAYOUTS = ("vdrt-native-v1", "vdrt-native-v2", "wan-i2v")
HINT_MODES = ("upscale",)  # modes that exist only as a hint: a model must take hints natively


def layout(config) -> str | None:
    """The conditioning layout of a model config (None: no conditioning channels)."""
    c, n = config.in_channels, config.cond_channels
    if n == 0:
        return None
    if n == c + 1:
        return "vdrt-native-v1"
    if n == 2 * (c + 1):
        return "vdrt-native-v2"
    if config.family == "wan":
        return "wan-i2v"
    raise ConfigError(f"cond_channels={n} is none of vdrt's layouts for {c} channels ({c + 1}: [known, keep]; "
                      f"{2 * (c + 1)}: [known, keep, hint, has_hint])")


def check_layout(config, card_layout: str | None, name: str) -> None:
    """A card that names its layout must name the one its config has."""
    if card_layout is not None and card_layout != layout(config):
        raise CheckpointError(f"model card {name!r} says cond_layout {card_layout!r} but its config has "
                              f"{layout(config)!r} ({config.cond_channels} conditioning channels)")


def check_mode(config, mode: str, name: str = "this model") -> None:
    """Refuse, before anything loads, a mode the model cannot run."""
    lay = layout(config)
    if mode in HINT_MODES and lay != "vdrt-native-v2":
        raise ConfigError(f"mode {mode} needs a model trained for it (conditioning layout vdrt-native-v2, e.g. "
                          f"vdrt-tiny-wan); {name} has {lay or 'no conditioning channels'}. With another model, "
                          "run mode v2v on the upsampled video")
    if mode == "slowmo" and config.in_channels != 3 and lay != "vdrt-native-v2":
        raise ConfigError(f"mode slowmo keeps single frames; {name} has a VAE (several frames a latent frame): "
                          "use a pixel-space model (vdrt-tiny-wan, vdrt-tiny)")


def replaces_latents(config, cond) -> bool:
    """True when the pipeline must paste known latents each step (no native path for this mode)."""
    if cond.keep is None:
        return False
    lay = layout(config)
    if lay is None:
        return True
    return lay == "wan-i2v" and cond.mode not in WAN_NATIVE_MODES


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
    lay = layout(config)
    if lay is None:
        return {}
    if lay == "wan-i2v":
        return _wan_inputs(config, cond, shape, codec, image_encoder, image_embeds)
    known = _masked_known(cond, shape)  # (1, C+1, F, h, w)
    return {"cond": known if lay == "vdrt-native-v1" else torch.cat([known, _hint(cond, shape)], dim=1)}


def _masked_known(cond, shape) -> torch.Tensor:
    """(1, C+1, F, h, w): [known * keep, keep], zeros when nothing is kept."""
    if cond.keep is None:
        return torch.zeros(1, shape[0] + 1, *shape[1:])
    keep = cond.keep.expand(1, *shape[1:])
    return torch.cat([cond.known * keep, keep])[None]


def _hint(cond, shape) -> torch.Tensor:
    """(1, C+1, F, h, w): [hint, 1] for a clip that guides (v2v, upscale), else zeros."""
    if cond.hint is None:
        return torch.zeros(1, shape[0] + 1, *shape[1:])
    return torch.cat([cond.hint, torch.ones(1, *shape[1:])])[None]


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
