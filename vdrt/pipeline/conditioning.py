"""Conditioning modes as known latents plus a keep mask.

Every mode reduces to: some latents are known (`known`, (C, F, h, w)) where `keep` is 1
((1, F, h, w)). Any denoiser can use them by masked latent replacement at each step (the
known latents noised to the current level are pasted in); models trained for it take them
natively through their conditioning channels (`native_cond`). v2v (SDEdit) instead starts
the sampler part-way from the noised input video.

| mode        | given                      | known                         |
| t2v         | text                       | nothing                       |
| i2v         | image                      | frame 0                       |
| extend      | video, k                   | the first k frames            |
| interpolate | video (first, last) / 2 images | first and last frames     |
| inpaint     | video + mask (True = make) | everything outside the mask   |
| outpaint    | video + mask (default: a border) | everything outside the mask |
| v2v         | video, strength            | nothing; starts from the video |
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vdrt.errors import ConfigError, MediaError
from vdrt.request import MODES, GenerateRequest

log = logging.getLogger(__name__)


@dataclass
class Conditioning:
    mode: str
    known: torch.Tensor | None = None  # (C, F, h, w)
    keep: torch.Tensor | None = None  # (1, F, h, w), 1 = known
    init: torch.Tensor | None = None  # (C, F, h, w), v2v start latents
    first_image: torch.Tensor | None = None  # (3, H, W) in [-1, 1], for image encoders
    last_image: torch.Tensor | None = None


def build(req: GenerateRequest, codec) -> Conditioning:
    """Encode a resolved request's media into known latents and a keep mask for `req.mode`.

    The request has already checked that the mode gets the media it needs and nothing else.
    """
    if req.mode not in MODES:
        raise ConfigError(f"unknown mode {req.mode!r}; modes are {list(MODES)}")
    builder = {"t2v": _t2v, "i2v": _i2v, "extend": _extend, "interpolate": _interpolate, "inpaint": _inpaint,
               "outpaint": _inpaint, "v2v": _v2v}[req.mode]
    return builder(req, codec)


def _t2v(req, codec):
    return Conditioning("t2v")


def _i2v(req, codec):
    frames = media_frames(req.image if req.image is not None else req.video, req, single=True, max_frames=1)[:, :1]
    known, keep = _known_prefix(req, codec, frames, 1)
    return Conditioning("i2v", known=known, keep=keep, first_image=frames[:, 0])


def _extend(req, codec):
    frames = media_frames(req.video, req, max_frames=req.known_frames or max(1, req.num_frames // 4))
    k = req.known_frames or frames.shape[1]
    if not 1 <= k < req.num_frames or k > frames.shape[1]:
        raise ConfigError(f"extend: known_frames={k} must be >= 1, < num_frames ({req.num_frames}) and <= the "
                          f"video's {frames.shape[1]} frames")
    known, keep = _known_prefix(req, codec, frames[:, :k], k)
    return Conditioning("extend", known=known, keep=keep)


def _interpolate(req, codec):
    first, last = _endpoints(req)
    shape = codec.geometry.latent_shape(req.num_frames, req.height, req.width)
    z_first, z_last = codec.encode(first[:, None]), codec.encode(last[:, None])  # (C, 1, h, w) each
    known = torch.zeros(shape)
    keep = torch.zeros(1, *shape[1:])
    known[:, :1], known[:, -1:] = z_first.float(), z_last.float()
    keep[:, 0], keep[:, -1] = 1, 1
    return Conditioning("interpolate", known=known, keep=keep, first_image=first, last_image=last)


def _inpaint(req, codec):
    source = req.video if req.video is not None else req.image
    if source is None:
        raise ConfigError(f"mode {req.mode} needs the video (or image) to edit: pass video= or image=")
    frames = _fit_frames(media_frames(source, req, max_frames=req.num_frames + 1), req.num_frames, req.mode)
    gen = generation_mask(req)  # (H, W) True = generate
    known = codec.encode(frames).float()  # (C, F, h, w)
    keep = _latent_keep(~gen, known.shape[-2:])  # (1, h, w)
    return Conditioning(req.mode, known=known, keep=keep.expand(1, known.shape[1], *keep.shape[-2:]).contiguous())


def _v2v(req, codec):
    frames = _fit_frames(media_frames(req.video, req, max_frames=req.num_frames + 1), req.num_frames, "v2v")
    return Conditioning("v2v", init=codec.encode(frames).float())


def _known_prefix(req, codec, frames, k) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode the first k pixel frames -> known (C, F, h, w) and keep (1, F, h, w)."""
    shape = codec.geometry.latent_shape(req.num_frames, req.height, req.width)
    z = codec.encode(frames).float()  # (C, f, h, w)
    f = codec.geometry.latent_frames(k)
    known, keep = torch.zeros(shape), torch.zeros(1, *shape[1:])
    known[:, :f], keep[:, :f] = z[:, :f], 1
    return known, keep


def _endpoints(req):
    if req.video is not None:
        frames = media_frames(req.video, req)
        if frames.shape[1] < 2:
            raise ConfigError("interpolate needs a video of at least 2 frames (its first and last are kept)")
        return frames[:, 0], frames[:, -1]
    if isinstance(req.image, (list, tuple)) and len(req.image) == 2:
        a, b = (media_frames(x, req, single=True)[:, 0] for x in req.image)
        return a, b
    raise ConfigError("mode interpolate needs the first and last frames: pass video= or image=(first, last)")


def media_frames(src, req, single: bool = False, max_frames: int | None = None) -> torch.Tensor:
    """A path, `Video`, uint8 array (H, W, 3)/(T, H, W, 3) or float tensor -> (3, T, H, W) in [-1, 1] at the request
    size; a file is decoded only up to `max_frames`, each frame resized as it is decoded (vdrt.io.read_video)."""
    from vdrt import io

    if isinstance(src, io.Video):
        src = src.frames
    if isinstance(src, torch.Tensor):
        x = src.float()
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return _resize_float(x[:, :max_frames], req.height, req.width)
    if isinstance(src, (str, bytes)) or hasattr(src, "__fspath__"):
        arr = _read_path(src, single, max_frames, (req.height, req.width))
    else:
        arr = np.asarray(src)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise MediaError(f"media array of dtype {arr.dtype} and shape {arr.shape} does not fit: need uint8 (H, W, 3) "
                         "or (T, H, W, 3)")
    if arr.ndim == 3:
        arr = arr[None]
    arr = arr[:max_frames]
    if arr.shape[1:3] != (req.height, req.width):
        io.log_resize("the input", arr.shape[1:3], (req.height, req.width))
    return io.to_float(io.resize_frames(arr, req.height, req.width))


def _read_path(src, single: bool, max_frames: int | None, size: tuple) -> np.ndarray:
    from pathlib import Path

    from vdrt import io

    p = Path(src)
    if single and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        img = io.read_image(p)
        if img.shape[:2] != tuple(size):
            io.log_resize(str(p), img.shape[:2], size)
        return img
    return io.read_video(p, max_frames=max_frames, size=size)


def _resize_float(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if x.shape[-2:] == (h, w):
        return x
    from vdrt import io

    io.log_resize("the input tensor", tuple(x.shape[-2:]), (h, w))
    return F.interpolate(x.transpose(0, 1), size=(h, w), mode="bilinear", align_corners=False).transpose(0, 1)


def _fit_frames(frames: torch.Tensor, n: int, mode: str = "") -> torch.Tensor:
    """(3, T, H, W) -> (3, n, H, W): cut, or repeat the last frame (still images become still videos); logged."""
    t = frames.shape[1]
    if t > n:
        log.info("%s: using the first %d frames of the input (it has more)", mode, n)
        return frames[:, :n]
    if t < n:
        log.info("%s: the input has %d frame(s); its last frame is repeated to make %d", mode, t, n)
        return torch.cat([frames, frames[:, -1:].expand(-1, n - t, -1, -1)], dim=1)
    return frames


def generation_mask(req) -> np.ndarray:
    """(H, W) bool, True = generate. outpaint without a mask: a border of 1/4 on each side."""
    from vdrt import io

    if req.mask is None:  # outpaint (inpaint without a mask is refused by the request)
        m = np.ones((req.height, req.width), bool)
        m[req.height // 4: -(req.height // 4), req.width // 4: -(req.width // 4)] = False
        return m
    m = io.read_mask(req.mask) if isinstance(req.mask, (str, bytes)) or hasattr(req.mask, "__fspath__") \
        else np.asarray(req.mask)
    if m.shape != (req.height, req.width):
        raise MediaError(f"mask of size {m.shape} does not match the video size ({req.height}, {req.width}); "
                         "resize the mask or pass height/width to match")
    return m.astype(bool)


def _latent_keep(keep_px: np.ndarray, hw) -> torch.Tensor:
    """(H, W) bool pixels -> (1, h, w) float: a latent pixel is kept only if all its pixels are known."""
    k = torch.from_numpy(keep_px.astype(np.float32))[None, None]
    return (-F.adaptive_max_pool2d(-k, tuple(hw)))[0]
