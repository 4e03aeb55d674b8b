"""Conditioning modes as known latents plus a keep mask (and, for some, a hint).

Every mode reduces to: some latents are known (`known`, (C, F, h, w)) where `keep` is 1
((1, F, h, w)). Any denoiser can use them by masked latent replacement at each step (the
known latents noised to the current level are pasted in); models trained for it take them
natively through their conditioning channels (`native.py`). v2v (SDEdit) instead starts
the sampler part-way from the noised input video; `hint` is a clip that guides without fixing
(v2v's video, upscale's low-resolution clip), taken by models of layout vdrt-native-v2 only.

| mode        | given                      | known                         |
| t2v         | text                       | nothing                       |
| i2v         | image                      | frame 0                       |
| extend      | video, k                   | the first k frames            |
| continue    | video (the last chunk), k  | its last k frames, as the first k (story continuation, a new prompt) |
| interpolate | video (first, last) / 2 images | first and last frames     |
| slowmo      | video of T' frames         | frame t*m <- input frame t (m = (F-1)/(T'-1), default 2) |
| inpaint     | video + mask (True = make) | everything outside the mask (one (H, W) mask, or one per frame (F, H, W)) |
| remove      | video + per-frame masks    | as inpaint: the masked object is made over (a model trained to remove it) |
| outpaint    | video + mask (default: a border) | everything outside the mask |
| grow        | video smaller than the canvas | the video, centred in the larger canvas (outpaint that grows it) |
| v2v         | video, strength            | nothing; starts from the video (and takes it as the hint) |
| upscale     | low-res video              | nothing; the hint is the video at half size, upsampled x2 (output 2x) |
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
    hint: torch.Tensor | None = None  # (C, F, h, w), a clip that guides (native layout v2)


def build(req: GenerateRequest, codec) -> Conditioning:
    """Encode a resolved request's media into known latents and a keep mask for `req.mode`.

    The request has already checked that the mode gets the media it needs and nothing else.
    """
    if req.mode not in MODES:
        raise ConfigError(f"unknown mode {req.mode!r}; modes are {list(MODES)}")
    builder = {"t2v": _t2v, "i2v": _i2v, "extend": _extend, "interpolate": _interpolate, "inpaint": _inpaint,
               "outpaint": _inpaint, "v2v": _v2v, "continue": _continue, "slowmo": _slowmo, "upscale": _upscale,
               "remove": _inpaint, "grow": _grow}[req.mode]
    return builder(req, codec)


def fit_request(req: GenerateRequest, config=None, name: str = "this model") -> GenerateRequest:
    """Sizes a mode takes from its input when the request leaves them unset (slowmo: 2x the frame rate;
    upscale: 2x the size), and the mode checked against the model (`config`), before anything loads."""
    if config is not None:
        from vdrt.pipeline import native

        native.check_mode(config, req.mode, name)
    if req.mode == "slowmo" and req.num_frames is None:
        return req.replace(num_frames=2 * (media_shape(req.video)[0] - 1) + 1)
    if req.mode == "upscale" and req.height is None and req.width is None:
        t, h, w = media_shape(req.video)
        return req.replace(height=2 * h, width=2 * w, num_frames=req.num_frames or t)
    return req


def _t2v(req, codec):
    return Conditioning("t2v")


def _i2v(req, codec):
    frames = media_frames(req.image if req.image is not None else req.video, req, single=True, max_frames=1)[:, :1]
    known, keep = _known_prefix(req, codec, frames, 1)
    return Conditioning("i2v", known=known, keep=keep, first_image=frames[:, 0])


def _extend(req, codec):
    """extend: the video's first k frames; continue: its LAST k frames (the previous chunk's end)."""
    wanted = req.known_frames or max(1, req.num_frames // 4)
    frames = media_frames(req.video, req, max_frames=wanted if req.mode == "extend" else None)
    k = req.known_frames or min(frames.shape[1], wanted)
    if not 1 <= k < req.num_frames or k > frames.shape[1]:
        raise ConfigError(f"{req.mode}: known_frames={k} must be >= 1, < num_frames ({req.num_frames}) and <= the "
                          f"video's {frames.shape[1]} frames")
    given = frames[:, :k] if req.mode == "extend" else frames[:, frames.shape[1] - k:]
    known, keep = _known_prefix(req, codec, given, k)
    return Conditioning(req.mode, known=known, keep=keep)


_continue = _extend


def _slowmo(req, codec):
    frames = media_frames(req.video, req)  # (3, T', H, W)
    t, f = frames.shape[1], req.num_frames
    m = (f - 1) // max(t - 1, 1)
    if t < 2 or m < 2 or (t - 1) * m + 1 != f:
        raise ConfigError(f"slowmo: {f} frames from a {t}-frame video is not a whole frame-rate factor m >= 2 "
                          f"(frames = m * (T' - 1) + 1, e.g. {2 * (t - 1) + 1} for x2, {4 * (t - 1) + 1} for x4)")
    if codec.geometry.time_factor != 1:
        raise ConfigError("slowmo keeps single frames; this model's VAE packs several frames a latent frame")
    shape = codec.geometry.latent_shape(f, req.height, req.width)
    known, keep = torch.zeros(shape), torch.zeros(1, *shape[1:])
    known[:, ::m], keep[:, ::m] = codec.encode(frames).float(), 1
    return Conditioning("slowmo", known=known, keep=keep)


def _upscale(req, codec):
    """The hint: the video at half the output size, upsampled x2 by nearest neighbour (as trained)."""
    if req.height % 2 or req.width % 2:
        raise ConfigError(f"upscale makes 2x the input: height and width must be even, got {req.height}x{req.width}")
    low = _frames_at(req.video, req.height // 2, req.width // 2, max_frames=req.num_frames + 1)  # (3, T, H/2, W/2)
    up = F.interpolate(_fit_frames(low, req.num_frames)[None], scale_factor=(1, 2, 2), mode="nearest")[0]
    return Conditioning("upscale", hint=codec.encode(up).float())


def _grow(req, codec):
    """The input (not resized) centred in the request's larger canvas; the rest is generated."""
    src = req.video if req.video is not None else req.image
    frames = _fit_frames(raw_frames(src, max_frames=req.num_frames + 1), req.num_frames, "grow")  # (3, F, h0, w0)
    h0, w0 = frames.shape[-2:]
    if h0 > req.height or w0 > req.width or (h0, w0) == (req.height, req.width):
        raise ConfigError(f"grow: the {w0}x{h0} input must be smaller than the {req.width}x{req.height} canvas in "
                          "one side and not larger in the other; pass a larger --width or --height")
    top, left = (req.height - h0) // 2, (req.width - w0) // 2
    canvas = torch.zeros(3, req.num_frames, req.height, req.width)
    canvas[:, :, top:top + h0, left:left + w0] = frames
    keep_px = np.zeros((req.height, req.width), bool)
    keep_px[top:top + h0, left:left + w0] = True
    known = codec.encode(canvas).float()
    keep = _latent_keep(keep_px, known.shape[-2:])
    return Conditioning("grow", known=known, keep=keep.expand(1, known.shape[1], *keep.shape[-2:]).contiguous())


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
    gen = frame_masks(req)  # (F, H, W) True = generate
    known = codec.encode(frames).float()  # (C, f, h, w)
    if len(gen) == 1:
        keep = _latent_keep(~gen[0], known.shape[-2:])  # (1, h, w)
        keep = keep.expand(1, known.shape[1], *keep.shape[-2:]).contiguous()
    else:
        keep = _latent_keep_frames(~gen, known.shape[1:], codec.geometry.time_factor)
    return Conditioning(req.mode, known=known, keep=keep)


def _v2v(req, codec):
    frames = _fit_frames(media_frames(req.video, req, max_frames=req.num_frames + 1), req.num_frames, "v2v")
    z = codec.encode(frames).float()
    return Conditioning("v2v", init=z, hint=z)


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
    return _frames_at(src, req.height, req.width, single, max_frames)


def _frames_at(src, height: int, width: int, single: bool = False, max_frames: int | None = None) -> torch.Tensor:
    """Media -> (3, T, height, width) in [-1, 1] (at most `max_frames`); a resize is logged."""
    from vdrt import io

    if isinstance(src, io.Video):
        src = src.frames
    if isinstance(src, torch.Tensor):
        return _resize_float(_as_frames(src.float())[:, :max_frames], height, width)
    arr = _uint8_frames(src, single, max_frames, (height, width))
    if arr.shape[1:3] != (height, width):
        io.log_resize("the input", arr.shape[1:3], (height, width))
    return io.to_float(io.resize_frames(arr, height, width))


def raw_frames(src, single: bool = False, max_frames: int | None = None) -> torch.Tensor:
    """Media at its own size -> (3, T, H, W) in [-1, 1] (at most `max_frames`)."""
    from vdrt import io

    if isinstance(src, io.Video):
        src = src.frames
    if isinstance(src, torch.Tensor):
        return _as_frames(src.float())[:, :max_frames]
    return io.to_float(_uint8_frames(src, single, max_frames, None))


def _as_frames(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1) if x.dim() == 3 else x


def _uint8_frames(src, single: bool, max_frames: int | None, size: tuple | None) -> np.ndarray:
    """A path or uint8 array -> uint8 (T, H, W, 3), at most `max_frames`; a file resized to `size` as decoded."""
    if isinstance(src, (str, bytes)) or hasattr(src, "__fspath__"):
        arr = _read_path(src, single, max_frames, size)
    else:
        arr = np.asarray(src)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise MediaError(f"media array of dtype {arr.dtype} and shape {arr.shape} does not fit: need uint8 (H, W, 3) "
                         "or (T, H, W, 3)")
    return (arr[None] if arr.ndim == 3 else arr)[:max_frames]


def media_shape(src) -> tuple[int, int, int]:
    """(T, H, W) of a video given as a path, `Video`, uint8 array or float (3, T, H, W) tensor."""
    t, h, w = raw_frames(src).shape[1:]
    return t, h, w


def _read_path(src, single: bool, max_frames: int | None, size: tuple | None) -> np.ndarray:
    from pathlib import Path

    from vdrt import io

    p = Path(src)
    if single and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        img = io.read_image(p)
        if size is not None and img.shape[:2] != tuple(size):
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


def frame_masks(req) -> np.ndarray:
    """(1, H, W) or (F, H, W) bool, True = generate. outpaint without a mask: a border of 1/4 on each side.

    A mask is an image or .npy path, a (H, W) array, or per frame a (F, H, W) array or a video of masks
    (grey level > 127 = generate)."""
    if req.mask is None:  # outpaint (inpaint without a mask is refused by the request)
        m = np.ones((1, req.height, req.width), bool)
        m[:, req.height // 4: -(req.height // 4), req.width // 4: -(req.width // 4)] = False
        return m
    m = _read_masks(req.mask)
    m = m[None] if m.ndim == 2 else m
    if m.ndim != 3 or m.shape[1:] != (req.height, req.width) or len(m) not in (1, req.num_frames):
        raise MediaError(f"mask of shape {m.shape} does not match the video size: need (H, W) = ({req.height}, "
                         f"{req.width}) or one per frame (F, H, W) = ({req.num_frames}, {req.height}, {req.width}); "
                         "resize the mask or pass height/width to match")
    return m.astype(bool)


def _read_masks(mask) -> np.ndarray:
    from pathlib import Path

    from vdrt import io

    if isinstance(mask, torch.Tensor):
        return mask.cpu().numpy()
    if not (isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__")):
        return np.asarray(mask)
    p = Path(mask)
    if p.is_dir() or p.suffix.lower() in io.AV_SUFFIXES + (".gif",):
        return io.read_video(p).mean(axis=-1) > 127  # (F, H, W) from a video of masks
    return io.read_mask(p)


def _latent_keep(keep_px: np.ndarray, hw) -> torch.Tensor:
    """(H, W) bool pixels -> (1, h, w) float: a latent pixel is kept only if all its pixels are known."""
    k = torch.from_numpy(keep_px.astype(np.float32))[None, None]
    return (-F.adaptive_max_pool2d(-k, tuple(hw)))[0]


def _latent_keep_frames(keep_px: np.ndarray, fhw, time_factor: int) -> torch.Tensor:
    """(F, H, W) bool pixels -> (1, f, h, w): a latent pixel is kept only if all the pixels it covers are known
    (latent frame 0 covers frame 0, latent frame j frames (j-1)*tf+1 .. j*tf, as Wan's causal VAE)."""
    f, h, w = fhw
    per_frame = torch.stack([_latent_keep(k, (h, w))[0] for k in keep_px])  # (F, h, w)
    if time_factor == 1:
        return per_frame[None]
    groups = [per_frame[:1]] + [per_frame[(j - 1) * time_factor + 1: j * time_factor + 1] for j in range(1, f)]
    return torch.stack([g.amin(0) for g in groups])[None]
