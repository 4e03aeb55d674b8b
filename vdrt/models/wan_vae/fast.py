"""The fast Wan VAE path: low precision with chosen layer kinds kept in fp32, channels_last_3d, sub-pixel
upsampling, large causal chunks, and one torch.compile'd chunk step.

What it does to the model (`prepare`, in place):
- parameters cast to `dtype`, those of the `keep_fp32` kinds (see KINDS) to float32; each layer
  computes in its weights' dtype (norms always in fp32);
- 5D weights in channels_last_3d, 4D in channels_last (cuDNN's NDHWC / NHWC kernels);
- `subpixel`: nearest-2x + conv3x3 -> one conv2x2 with 4 phase outputs (4/9 of those FLOPs, exact);
- `conv_impl="taps2d"`: 3x3x3 convs as three conv2d over frame views (a second cuDNN path to measure);
- `compile="regions"`: each norm + SiLU + history concatenation compiled (dynamic shapes: compiles once
  per dtype/layout, seconds), one fused kernel instead of ~6 passes; `compile="chunk"`: the whole chunk.

How it runs a clip: frame 0 alone (eager), then `chunk` latent frames per call through one
`ChunkStep` (`(chunk, *history) -> (out, *history')`), compiled once with `compile="chunk"` (a short
last chunk is padded: exact, the VAE is causal). The chunk shrinks so that no activation passes 2^31
elements (cuDNN's 32-bit indexing) and, where possible, divides the frames after frame 0.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterator

import torch
import torch.nn as nn

from vdrt.errors import ConfigError
from vdrt.models.wan_vae.config import WanVAEConfig
from vdrt.models.wan_vae.layers import CONV_IMPLS, CausalConv3d, Resample, RMSNorm, State, norm_silu_history
from vdrt.models.wan_vae.model import WanVAE, check_latents, check_video, latent_frames

log = logging.getLogger(__name__)

KINDS = ("conv", "shortcut", "conv_in", "conv_out", "time_conv", "resample", "attention", "quant", "norm")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MAX_ELEMENTS = 2 ** 31 - 1
COMPILE_MODES = ("none", "regions", "chunk")


@dataclasses.dataclass(frozen=True)
class FastOptions:
    """How the fast path runs (see the module docstring); the defaults are the eager bf16 path."""

    dtype: str = "bfloat16"
    keep_fp32: tuple[str, ...] = ("norm",)  # the norm gains: free (norms compute in fp32), +0.6 dB on CPU
    channels_last: bool = True
    subpixel: bool = True
    conv_impl: str = "conv3d"
    chunk: int = 5  # latent frames per call after frame 0 (shrunk to fit MAX_ELEMENTS)
    compile: str = "none"  # "regions": each norm+SiLU+history region; "chunk": the whole chunk step
    cudnn_benchmark: bool = True

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"VAE dtype {self.dtype!r} is not one of {sorted(DTYPES)}")
        bad = sorted(set(self.keep_fp32) - set(KINDS))
        if bad:
            raise ConfigError(f"keep_fp32 names unknown layer kinds {bad}; known: {list(KINDS)}")
        if self.conv_impl not in CONV_IMPLS:
            raise ConfigError(f"conv_impl {self.conv_impl!r} is not one of {CONV_IMPLS}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile={self.compile!r} is not one of {COMPILE_MODES}")
        if self.chunk < 1:
            raise ConfigError(f"chunk={self.chunk}: latent frames per call must be >= 1")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def param_kind(name: str) -> str:
    """The layer kind of a WanVAE parameter, from its (diffusers) name."""
    parts = name.split(".")
    owner = parts[-2] if len(parts) > 1 else ""
    if "attentions" in parts:
        return "attention"
    if owner.startswith("norm"):
        return "norm"
    if owner in ("time_conv", "conv_in", "conv_out"):
        return owner
    if owner == "conv_shortcut":
        return "shortcut"
    if parts[0] in ("quant_conv", "post_quant_conv"):
        return "quant"
    if "resample" in parts or parts[-1].startswith("phase_"):
        return "resample"
    return "conv"


@torch.no_grad()
def prepare(model: WanVAE, opts: FastOptions) -> WanVAE:
    """Apply `opts` to `model` in place (see the module docstring) and return it, in eval mode."""
    if opts.subpixel:
        for m in model.modules():
            if isinstance(m, Resample) and m.mode.startswith("up") and m.phase_weight is None:
                m.use_subpixel()
    set_precision(model, opts.torch_dtype, torch.float32, opts.keep_fp32)
    for p in model.parameters():
        p.data = param_layout(p.data, opts.channels_last)
    fused = torch.compile(norm_silu_history, dynamic=True) if opts.compile == "regions" else None
    fmt3, fmt2 = (torch.channels_last_3d, torch.channels_last) if opts.channels_last else (None, None)
    for m in model.modules():
        if isinstance(m, CausalConv3d):
            m.memory_format, m.impl = fmt3, opts.conv_impl
        elif isinstance(m, Resample):
            m.memory_format = fmt2
        elif isinstance(m, RMSNorm):
            m.fused = fused
    return model.eval()


@torch.no_grad()
def set_precision(model: WanVAE, low: torch.dtype, high: torch.dtype, keep_high: tuple[str, ...]) -> None:
    """Parameters of the `keep_high` kinds in `high`, the others in `low`; each layer computes in its
    weights' dtype, so this is the whole precision policy."""
    for name, p in model.named_parameters():
        p.data = p.data.to(high if param_kind(name) in keep_high else low)


def param_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if not channels_last or t.dim() not in (4, 5):
        return t.contiguous()
    return t.contiguous(memory_format=torch.channels_last_3d if t.dim() == 5 else torch.channels_last)


class ChunkStep(nn.Module):
    """(chunk, *history) -> (out, *history'): one causal chunk of an EncodePart / DecodePart as a pure
    function of tensors (what torch.compile and torch.export see); `keys` fixes the history order.
    With `keys=None` it is the clip's first chunk: no history in, the history out in `keys_out` order."""

    def __init__(self, part: nn.Module, keys: list[str] | None, keys_out: list[str] | None = None):
        super().__init__()
        self.part, self.keys = part, keys
        self.keys_out = list(keys if keys is not None else keys_out)

    def forward(self, x: torch.Tensor, *history: torch.Tensor):
        state: State = dict(zip(self.keys, history)) if self.keys is not None else {}
        out = self.part(x, state)
        return (out, *[state[k] for k in self.keys_out])


class FastWanVAE:
    """A prepared WanVAE with chunked, optionally compiled, encode and decode (unnormalised latents)."""

    def __init__(self, model: WanVAE, opts: FastOptions = FastOptions()):
        self.opts = opts
        self.model = prepare(model, opts)
        self.config: WanVAEConfig = model.config
        self._steps: dict[tuple[bool, tuple[str, ...]], Callable] = {}

    def normalize(self, mu: torch.Tensor) -> torch.Tensor:
        """Posterior mean -> the denoiser's latent space: (mu - latents_mean) / latents_std per channel."""
        mean, std = self._stats(mu)
        return (mu - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (like.dim() - 2)
        c = self.config
        return tuple(torch.tensor(v, device=like.device, dtype=like.dtype).view(shape)
                     for v in (c.latents_mean, c.latents_std))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return self._layout(x.to(self.device, self.opts.torch_dtype))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """x in the path's memory format (a no-op when it is): compiled steps see one layout, compile once."""
        fmt = torch.channels_last_3d if self.opts.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def _step(self, encode: bool, keys: list[str]) -> Callable:
        sig = (encode, tuple(keys))
        if sig not in self._steps:
            step = ChunkStep(self.model.part(encode), keys)
            chunk = self.opts.compile == "chunk"
            self._steps[sig] = torch.compile(step, dynamic=False, fullgraph=True) if chunk else step
        return self._steps[sig]

    def _call(self, fn: Callable, *args):
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=self.opts.cudnn_benchmark,
                                                         deterministic=False,
                                                         allow_tf32=torch.backends.cudnn.allow_tf32):
            return fn(*args)

    def _chunks(self, x: torch.Tensor, bounds: list[tuple[int, int]], encode: bool,
                size: int) -> Iterator[torch.Tensor]:
        """x[:, :, a:b] for each (a, b) in order: the first eagerly (it fixes the history keys), the rest
        through the (compiled) ChunkStep; with compile="chunk" every one padded to `size` frames."""
        part, keys = self.model.part(encode), []

        def first(chunk):
            state: State = {}
            out = self._call(part, chunk, state)
            keys.extend(state)
            return out, [state[k] for k in keys]

        def step(chunk, *history):
            return self._call(self._step(encode, keys), chunk, *history)
        pad = size if self.opts.compile == "chunk" else 0
        yield from run_causal(first, step, x, bounds, self._layout, pad=pad)

    def decode_stream(self, z: torch.Tensor) -> Iterator[torch.Tensor]:
        """(B, z, F, h, w) -> chunks (B, 3, t, 8h, 8w) in [-1, 1], in time order, dtype of the path."""
        check_latents(self.config, z)
        k = plan_chunk(self.config, self.opts, z.shape[2], z.shape[3], z.shape[4])
        bounds = _bounds([1] + _split(z.shape[2] - 1, k))
        for out in self._chunks(self._input(z), bounds, encode=False, size=k):
            yield out.clamp(-1, 1)

    def frames_stream(self, z: torch.Tensor) -> Iterator[torch.Tensor]:
        """(1, z, F, h, w) -> uint8 (t, H, W, 3) chunks on the host, in time order (see uint8_stream)."""
        if z.dim() != 5 or z.shape[0] != 1:
            raise ConfigError(f"frames_stream decodes one clip: latents (1, z, F, h, w), got {tuple(z.shape)}")
        return uint8_stream(self.decode_stream(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z, F, h, w) -> (B, 3, 4(F-1)+1, 8h, 8w) in [-1, 1]."""
        return torch.cat(list(self.decode_stream(z)), 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, z, F, H/8, W/8), the posterior mean."""
        check_video(self.config, x)
        tf = self.config.time_factor
        f = latent_frames(self.config, x.shape[2])
        sf = self.config.space_factor
        k = plan_chunk(self.config, self.opts, f, x.shape[3] // sf, x.shape[4] // sf)
        bounds = [(0, 1)] + [(1 + a * tf, 1 + b * tf) for a, b in _bounds(_split(f - 1, k))]
        return torch.cat(list(self._chunks(self._input(x), bounds, encode=True, size=k * tf)), 2)


def run_causal(first: Callable, step: Callable, x: torch.Tensor, bounds: list[tuple[int, int]],
               layout: Callable = lambda t: t, pad: int = 0) -> Iterator[torch.Tensor]:
    """Outputs of x[:, :, a:b] for each (a, b): first(chunk) -> (out, history) for the first bound, then
    step(chunk, *history) -> (out, *history). With `pad`, a chunk shorter than `pad` frames is padded by
    repeating its last frame and its output trimmed: exact (the VAE is causal), and one shape."""
    (a, b), rest = bounds[0], bounds[1:]
    out, history = first(x[:, :, a:b])
    yield out
    for a, b in rest:
        tail = [x[:, :, b - 1:b]] * max(0, pad - (b - a))
        chunk = layout(torch.cat([x[:, :, a:b]] + tail, 2))  # a fresh tensor: every call has the same strides
        out, *history = step(chunk, *map(layout, history))
        yield out[:, :, :out.shape[2] * (b - a) // chunk.shape[2]]


def uint8_stream(chunks: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    """(1, 3, t, H, W) chunks in [-1, 1] -> uint8 (t, H, W, 3) on the host (vdrt.io's rounding). Each chunk's
    copy to (pinned) host memory is queued before the next chunk is computed and handed out after, so a
    writer consuming chunk i runs while the GPU decodes chunk i+1."""
    pending = None
    for out in chunks:
        u8 = ((out[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous()
        host = torch.empty(u8.shape, dtype=torch.uint8, pin_memory=u8.is_cuda)
        host.copy_(u8, non_blocking=True)
        done = torch.cuda.Event() if u8.is_cuda else None
        if done is not None:
            done.record()
        if pending is not None:
            yield _ready(*pending)
        pending = (host, done)
    if pending is not None:
        yield _ready(*pending)


def _ready(host: torch.Tensor, done) -> torch.Tensor:
    if done is not None:
        done.synchronize()
    return host


def _split(n: int, k: int) -> list[int]:
    return [min(k, n - i) for i in range(0, n, k)]


def _bounds(sizes: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for n in sizes:
        out.append((start, start + n))
        start += n
    return out


def plan_chunk(cfg: WanVAEConfig, opts: FastOptions, num_latent: int, h: int, w: int) -> int:
    """Latent frames per call after frame 0: at most opts.chunk and small enough that the largest activation
    stays under MAX_ELEMENTS; then, for eager calls, a divisor of the remaining frames when one is at least
    half that (compile="chunk" keeps one chunk for every clip length: short tails are padded)."""
    k = opts.chunk if opts.compile == "chunk" else max(1, min(opts.chunk, num_latent - 1))
    while k > 1 and largest_activation(cfg, opts, k, h, w) > MAX_ELEMENTS:
        k -= 1
    if largest_activation(cfg, opts, k, h, w) > MAX_ELEMENTS:
        sf = cfg.space_factor
        raise ConfigError(f"VAE: a {sf * h}x{sf * w} frame is too large for one call even one latent frame at a "
                          f"time ({largest_activation(cfg, opts, 1, h, w)} elements > 2^31); use a smaller size")
    if opts.compile == "chunk":
        return k
    divisors = [d for d in range(k, 0, -1) if (num_latent - 1) % d == 0 and 2 * d >= k]
    return divisors[0] if divisors else k


def largest_activation(cfg: WanVAEConfig, opts: FastOptions, k: int, h: int, w: int) -> int:
    """Elements of the largest tensor one call of k latent frames makes (full resolution, history included)."""
    t, hh, ww = k * cfg.time_factor, h * cfg.space_factor, w * cfg.space_factor
    full = max(cfg.base_dim, cfg.decoder_dim) * cfg.dim_mult[0] * (t + 2) * hh * ww
    if opts.subpixel:
        return full
    return max(full, cfg.decoder_dim * cfg.dim_mult[min(1, len(cfg.dim_mult) - 1)] * t * hh * ww)
