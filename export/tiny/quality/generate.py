"""Batched generation with a tiny-model card, noise paired per clip, through THE sampling loop.

    gen = CardGenerator.from_card("runs/x/vdrt-tiny-wan-teacher.json", num_steps=30)
    clips = gen(prompts, "extend", video=truth, known_frames=4, seed=0)     # uint8 (N, T, H, W, 3)
    clips = gen(prompts, "t2v", size=(33, 64, 96))

`generate_fn(prompts, mode, video=None, known_frames=None, seed=0, size=None)` is the oracle's
generator interface. Modes: t2v, i2v, extend, interpolate (keep masks over frames), and with a
v2-layout model also slowmo (every `known_frames`-th frame of `video` known), v2v (`video` as the
hint) and upscale (`video` at half size as the hint). Clip i's noise (the start and every
re-noising of a few-step sampler) comes from its own generator seeded `seed + i`, so a clip is the
same whatever batch it runs in and whatever configuration runs it: comparisons are paired.
`ops` forces the implementation of each `vdrt.ops` op (default: the torch reference for all,
so a kernel under development cannot skew a reference); pass e.g. {"attention": "vdrt-sparse"}
to evaluate a kernel. Sampling runs `vdrt.samplers.loop.sample`, with CFG batched into one call.
Alphabet: N clips, B batch, C channels, T frames, H, W pixels.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch

from vdrt.errors import ConfigError, MediaError

FRAME_MODES = ("t2v", "i2v", "extend", "interpolate", "slowmo")
HINT_MODES = ("v2v", "upscale")
CUDA_GRID_Y = 65535  # SDPA's flash / mem-efficient kernels put the batch on a grid axis of this size


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    num_steps: int = 4
    guidance: float = 1.0
    sampler: str = "fewstep"
    shift: float = 1.0
    timesteps: tuple = ()  # fewstep only

    @classmethod
    def from_defaults(cls, d: dict, **overrides) -> SampleSettings:
        base = cls(d.get("num_steps", 4), d.get("guidance", 1.0), d.get("sampler", "fewstep"), d.get("shift", 1.0),
                   tuple(d.get("sampler_timesteps") or ()))
        over = {k: v for k, v in overrides.items() if v is not None}
        if "num_steps" in over and "timesteps" not in over and len(base.timesteps) != over["num_steps"]:
            over["timesteps"] = ()  # the distilled timesteps only fit their own step count
        return dataclasses.replace(base, **over)

    def sampler_obj(self):
        from vdrt import samplers

        if self.sampler == "fewstep":
            return samplers.get("fewstep", timesteps=self.timesteps or None)
        return samplers.get(self.sampler, shift=self.shift)

    def describe(self) -> str:
        g = f" g{self.guidance:g}" if self.guidance != 1.0 else ""
        return f"{self.sampler}-{self.num_steps}{g}" + (f" shift{self.shift:g}" if self.sampler != "fewstep" else "")


class PairedNoise:
    """Standard normal noise per clip from generators seeded `seed + i`: (N, ...) stacked on `device`."""

    def __init__(self, seeds, device):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.device = device

    def like(self, x: torch.Tensor) -> torch.Tensor:
        per = x.shape[1:]
        return torch.stack([torch.randn(per, generator=g) for g in self.gens]).to(self.device, x.dtype)


def call_denoiser(den, x, t, ctx, cond, limit: int | None = None) -> torch.Tensor:
    """den(x, t, ctx, cond=cond) in even batch chunks small enough for factorized temporal attention on CUDA
    (its SDPA kernels fail from B*S = 65536 sequences, pytorch#146704)."""
    if limit is None and x.device.type == "cuda" and den.config.family == "factorized":
        p = den.config.patch_size[-1]
        limit = max(1, CUDA_GRID_Y // ((x.shape[-2] // p) * (x.shape[-1] // p)))
    if limit is None or x.shape[0] <= limit:
        return den(x, t, ctx, cond=cond)
    n = -(-x.shape[0] // limit)
    size = -(-x.shape[0] // n)
    return torch.cat([den(x[i: i + size], t[i: i + size], ctx[i: i + size], cond=cond[i: i + size])
                      for i in range(0, x.shape[0], size)])


def frame_keep(mode: str, n: int, frames: int, known_frames: int | None) -> torch.Tensor:
    """(N, T) bool frames given whole for a frame-conditioned mode."""
    keep = torch.zeros(n, frames, dtype=torch.bool)
    k = known_frames
    if mode == "i2v":
        keep[:, 0] = True
    elif mode == "extend":
        if k is None or not 1 <= k < frames:
            raise ConfigError(f"extend: known_frames={k} must be in 1..{frames - 1}")
        keep[:, :k] = True
    elif mode == "interpolate":
        keep[:, 0] = keep[:, -1] = True
    elif mode == "slowmo":
        if k not in (2, 4) or (frames - 1) % k:
            raise ConfigError(f"slowmo: known_frames={k} must be 2 or 4 and divide frames - 1 = {frames - 1}")
        keep[:, ::k] = True
    elif mode != "t2v":
        raise ConfigError(f"mode {mode!r} is not supported here; use one of {FRAME_MODES + HINT_MODES}")
    return keep


def build_cond(cond_channels: int, mode: str, video, known_frames, n: int, size) -> torch.Tensor:
    """The conditioning (N, cond_channels, T, H, W) of a mode, for vdrt's native layouts v1 (4) and v2 (8)."""
    from vdrt.export.tiny.data.raster import to_float
    from vdrt.export.tiny.modes import native_cond

    f, h, w = size
    x = torch.zeros(n, 3, f, h, w) if video is None else torch.from_numpy(to_float(video))
    if mode in HINT_MODES:
        if cond_channels != 8 or video is None:
            raise ConfigError(f"mode {mode} needs video= and a model with the v2 conditioning layout (8 channels)")
        if mode == "upscale":
            x = torch.nn.functional.interpolate(x, size=(f, h, w), mode="nearest")
        zeros = torch.zeros(n, 1, f, h, w)
        return native_cond(torch.zeros_like(x), zeros, x, torch.ones_like(zeros))
    if mode != "t2v" and video is None:
        raise ConfigError(f"mode {mode} needs video= (uint8 (N, T, H, W, 3))")
    keep = frame_keep(mode, n, f, known_frames)[:, None, :, None, None].expand(n, 1, f, h, w).float()
    cond = native_cond(x, keep)
    if cond_channels == 4:
        return cond[:, :4]
    if cond_channels != 8:
        raise ConfigError(f"cond_channels={cond_channels} is neither vdrt's v1 (4) nor v2 (8) native layout")
    return cond


class CardGenerator:
    """Batched generation with a tiny-model card: see the module doc for the interface.

    On CUDA the denoiser runs under bf16 autocast (as trained); fp32 on the CPU.
    """

    def __init__(self, denoiser, text, settings: SampleSettings, device=None, batch_size: int = 64,
                 name: str = "", autocast: bool | None = None, ops: dict | None = None, size=(17, 64, 64)):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.denoiser, self.text = denoiser.to(self.device).eval(), text
        text.encoder.to(self.device).eval()
        self.settings, self.batch_size, self.name, self.size = settings, int(batch_size), name, tuple(size)
        self.autocast = self.device.type == "cuda" if autocast is None else autocast
        self.ops = ops

    @classmethod
    def from_card(cls, card_path, device=None, random_init: bool = False, batch_size: int = 64, ops=None,
                  transform=None, **settings) -> CardGenerator:
        """Load a card (or only its architecture, `random_init=True`); `settings` override its defaults
        (num_steps, guidance, sampler, shift, timesteps); `transform(denoiser)` (e.g. int4 weights) runs
        on the loaded model."""
        from vdrt.export.tiny.quality.cards import build_models, load_card_models, read_card

        card = read_card(card_path)
        den, text = build_models(card["config"], card["text"]) if random_init else load_card_models(card)
        if transform is not None:
            den = transform(den)
        name = card["name"] + (" (random init)" if random_init else "")
        d = card["defaults"]
        return cls(den, text, SampleSettings.from_defaults(d, **settings), device=device, batch_size=batch_size,
                   name=name, ops=ops, size=(d["num_frames"], d["height"], d["width"]))

    def __call__(self, prompts, mode: str, video=None, known_frames=None, seed: int = 0, size=None) -> np.ndarray:
        from vdrt.export.tiny.data.raster import to_uint8

        size = self._size(mode, video, size)
        outs = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            vid = None if video is None else np.asarray(video)[chunk]
            x = self.sample(list(prompts[chunk]), mode, vid, known_frames, seed + start, size)
            outs.append(to_uint8(x.float().clamp(-1, 1).cpu()))
        return np.concatenate(outs)

    def _size(self, mode: str, video, size) -> tuple[int, int, int]:
        if video is not None:
            t, h, w = np.asarray(video).shape[1:4]
            return (t, 2 * h, 2 * w) if mode == "upscale" else (t, h, w)
        return tuple(size or self.size)

    @torch.no_grad()
    def sample(self, prompts: list[str], mode: str, video=None, known_frames=None, seed: int = 0,
               size=None) -> torch.Tensor:
        """Pixels (B, 3, T, H, W) in about [-1, 1] for one batch; clip i's noise is seeded seed + i."""
        from vdrt.samplers.loop import sample

        s, b, size = self.settings, len(prompts), tuple(size or self.size)
        cond = build_cond(self.denoiser.config.cond_channels, mode, video, known_frames, b, size).to(self.device)
        ctx = self.text(prompts)
        cfg = s.guidance != 1.0
        if cfg:
            ctx, cond = torch.cat([ctx, torch.zeros_like(ctx)]), torch.cat([cond, cond])
        noise = PairedNoise(range(seed, seed + b), self.device)
        sampler = s.sampler_obj()
        sampler.noise_like = noise.like  # re-noising few-step samplers draw per-clip noise too
        x = noise.like(torch.empty(b, 3, *size))
        with self._ops(), self._autocast():
            x = sample(lambda x, t, i: self._velocity(x, t, ctx, cond, cfg), x, sampler, s.num_steps,
                       progress=False)
        return x

    def _velocity(self, x, t, ctx, cond, cfg: bool) -> torch.Tensor:
        from vdrt.samplers.guidance import cfg_combine

        xin, tin = (torch.cat([x, x]), torch.cat([t, t])) if cfg else (x, t)
        out = call_denoiser(self.denoiser, xin, tin.float(), ctx, cond).float()
        return cfg_combine(out, self.settings.guidance) if cfg else out

    def _ops(self):
        from vdrt import ops

        return ops.use(**{**dict.fromkeys(ops.OPS, "torch"), **(self.ops or {})})

    def _autocast(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def checked(frames, n: int, size) -> np.ndarray:
    """A generator's output, checked: uint8 (N, T, H, W, 3)."""
    frames = np.asarray(frames)
    want = (n, *size, 3)
    if frames.dtype != np.uint8 or frames.shape != want:
        raise MediaError(f"generate_fn returned {frames.dtype} {frames.shape}; the oracle needs uint8 {want}")
    return frames
