"""Sizes checked, and memory estimated and refused, before anything is allocated.

`check(req, config, geometry, device, dtype, ...)` runs after the request is resolved (its sizes
known) and before any weight is loaded (the CLI) or any step runs (`Pipeline.__call__`):

1. the model's own limits: a factorized model's `max_frames`, Wan's rope table (`rope_max_seq_len`
   patches per axis), an engine's profile (frames, height, width, and batch 2 for CFG);
2. an estimate of the peak, per phase, from the config and the request (`estimate`):
   - weights (only before loading: the denoiser's parameters, counted on the meta device, plus the
     encoders' and VAE's files);
   - one denoiser call: tokens x (8 D + 2 FFN) x activation bytes, x2 under CFG (one batched call);
   - attention by the op chosen: SDPA and the flash-style kernels keep no L^2 (0), the torch math
     path (fp64 on CUDA) and the CPU emulation of 8-bit attention do, sparse attention reorders
     q, k, v and keeps per-head masks;
   - the VAE: its chunk plan (`wan_vae.fast.plan_chunk`) x the largest activation of one chunk x 12,
     the same for an encode of the input video;
   - the decoded video as floats and the uint8 frames held for the writer (every video of the call);
3. the peak (weights + the largest phase + the frames held, x1.15) against what the device has:
   `torch.cuda.mem_get_info` plus the caching allocator's free blocks on a GPU (the frames are then
   checked against the host); on the CPU /proc/meminfo's MemAvailable, capped by a cgroup limit.

A refusal (`MemoryLimitError`) names the size asked, the estimate and its parts, what is available,
and what would fit at this size (the most frames), or at this frame count (the largest size).
`VDRT_MEMORY_LIMIT=12G` sets the memory taken as available (a shared box, a test);
`VDRT_MEMORY_CHECK=0` turns the estimate off (the model's limits still hold).

The constants were calibrated on the CPU against the peak RSS of fp32 runs of wan-tiny and
factorized-tiny (tests/pipeline/test_memory.py re-measures and requires estimate >= measured);
they are not yet calibrated on a GPU (benchmarks/device/soak.sh records estimate and peak there).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import torch

from vdrt.errors import ConfigError, MemoryLimitError

log = logging.getLogger(__name__)

GiB = 1 << 30
ACT_PER_D, ACT_PER_FFN = 8, 2  # activations live at a block's peak, per token, in units of the width
ACT_FIXED = 64 << 20
LATENT_COPIES = 10  # the sampler's state (x, noise, output, history) and the CFG batch, fp32
VAE_PER_ELEMENT = 12  # x the largest activation of one chunk (measured 9-15 with the constant below)
VAE_FIXED = 256 << 20
PIXEL_BYTES = 56  # per pixel: the float decode -> uint8 (vdrt.io.frames_from_float: ~4 fp32 temporaries)
MARGIN = 1.15
# the process's own growth during a call, whatever its size: modules imported lazily on first use, thread
# stacks, the allocator's slack (measured on the CPU: 0-80 MB over the tensors, varying run to run)
RUNTIME = 96 << 20
# per pixel of every video, held until the call returns: uint8 frames, plus diffusers' output types' floats
FRAME_BYTES = {"video": 3, "latent": 0, "pil": 6, "np": 15, "pt": 27}


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes, per part; `device_peak` and `host_peak` are what is compared with the memory available."""

    device: str
    weights: int = 0
    denoise: int = 0  # one engine call's activations and the sampler's state
    attention: int = 0  # the attention op's workspace on top
    encode: int = 0  # the input media as frames and their VAE encode
    decode: int = 0  # the VAE / pixel decode of one video
    frames: int = 0  # every video's frames, held for the output

    @property
    def device_peak(self) -> int:
        host = self.frames + RUNTIME if self.device == "cpu" else 0
        return int(MARGIN * (self.weights + max(self.denoise + self.attention, self.encode, self.decode) + host))

    @property
    def host_peak(self) -> int:
        return int(MARGIN * (self.frames + RUNTIME))

    def parts(self) -> str:
        names = ("weights", "denoise", "attention", "encode", "decode", "frames")
        return ", ".join(f"{n} {gib(getattr(self, n))}" for n in names if getattr(self, n))


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the estimate needs beside the request: the model, where it runs, and how."""

    config: object
    geometry: object
    device: torch.device
    dtype: torch.dtype
    vae: tuple | None = None  # (WanVAEConfig, FastOptions) of a Wan VAE codec; None: pixels
    weights: int = 0  # bytes still to load (0 once loaded)
    attention: str = "auto"
    profiles: dict | None = None  # an engine's manifest profiles
    name: str = "this model"


def gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n < 100 * GiB else f"{n / GiB:.0f} GiB"


# ---------------------------------------------------------------- the check


def check(req, plan: Plan) -> Estimate | None:
    """Refuse `req` (resolved) when it exceeds the model's limits or the memory available; the estimate."""
    shape = plan.geometry.latent_shape(req.num_frames, req.height, req.width)
    check_limits(plan, shape, guided=_guided(req))
    if os.environ.get("VDRT_MEMORY_CHECK", "1") == "0":
        return None
    est = estimate(req, plan)
    have = available(plan.device)
    host = available(torch.device("cpu")) if plan.device.type != "cpu" else None
    if have is not None and est.device_peak > have:
        raise MemoryLimitError(_refusal(req, plan, est, est.device_peak, have, str(plan.device)))
    if host is not None and est.host_peak > host:
        raise MemoryLimitError(_refusal(req, plan, est, est.host_peak, host, "the host (frames held)"))
    log.debug("memory: %s needs about %s (%s); %s available", plan.device, gib(est.device_peak), est.parts(),
              "?" if have is None else gib(have))
    return est


def _guided(req) -> bool:
    return req.guidance is not None and req.guidance != 1.0


def _refusal(req, plan: Plan, est: Estimate, need: int, have: int, where: str) -> str:
    videos = len(req.prompts) * req.num_videos
    asked = f"{req.num_frames} frame{'s' * (req.num_frames > 1)} of {req.width}x{req.height}" + \
        (f" x {videos} videos" if videos > 1 else "")
    return (f"{plan.name}: {asked} needs about {gib(need)} on {where} ({est.parts()}); {gib(have)} is available. "
            f"{would_fit(req, plan, have)} (VDRT_MEMORY_LIMIT sets the memory taken as available)")


def would_fit(req, plan: Plan, have: int) -> str:
    """The most frames at this size, else the largest size (same aspect) at this frame count, that fit `have`."""
    def fits(**kw) -> bool:
        r = req.replace(**kw)
        e = estimate(r, plan)
        return max(e.device_peak, e.host_peak if plan.device.type != "cpu" else 0) <= have

    frames = _valid(plan.geometry, req.num_frames)
    best = _largest(frames, lambda n: fits(num_frames=n))
    if best is not None:
        return f"At {req.width}x{req.height} at most {best} frame{'s fit' if best > 1 else ' fits'}."
    m = plan.geometry.multiple
    sizes = [(h, _scaled(req.width * h / req.height, m)) for h in range(req.height - m, 0, -m)]
    sizes = [s for s in sizes if s[1] >= m][::-1]
    i = _largest(list(range(len(sizes))), lambda j: fits(height=sizes[j][0], width=sizes[j][1]))
    if i is not None:
        return f"At {req.num_frames} frames at most {sizes[i][1]}x{sizes[i][0]} fits."
    return "Even the smallest size does not fit: free memory, or use a smaller model or precision."


def _valid(geometry, up_to: int) -> list[int]:
    step = geometry.time_factor
    return list(range(1, up_to + 1, step))


def _scaled(v: float, m: int) -> int:
    return max(m, int(v // m) * m)


def _largest(items: list, ok) -> object:
    """The last item for which ok() holds, given ok is monotone (true then false); None if none."""
    lo, hi, best = 0, len(items) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if ok(items[mid]):
            best, lo = items[mid], mid + 1
        else:
            hi = mid - 1
    return best


# ---------------------------------------------------------------- the model's limits


def check_limits(plan: Plan, shape: tuple, guided: bool) -> None:
    """A latent (C, F, h, w) the model or engine cannot take, refused before anything is loaded."""
    c, (_, f, h, w) = plan.config, shape
    if getattr(c, "family", None) == "factorized" and f > c.max_frames:
        raise ConfigError(f"{plan.name} takes at most {c.max_frames} frames (max_frames); asked for {f}. "
                          f"Use --frames {c.max_frames} or fewer")
    if getattr(c, "family", None) == "wan":
        grid = [n // p for n, p in zip((f, h, w), c.patch_size)]
        if max(grid) > c.rope_max_seq_len:
            raise ConfigError(f"{plan.name} takes at most {c.rope_max_seq_len} patches per axis (its rope table); "
                              f"the latent grid would be {tuple(grid)}: use fewer frames or a smaller size")
    if plan.profiles:
        _check_profiles(plan, {"frames": f, "height": h, "width": w, "batch": 2 if guided else 1})


def _check_profiles(plan: Plan, sizes: dict) -> None:
    for dim, n in sizes.items():
        p = plan.profiles.get(dim)
        if p is not None and not p["min"] <= n <= p["max"]:
            why = " (guidance > 1 batches the two CFG branches: pass --guidance 1, or rebuild with --batch 1:2:2)" \
                if dim == "batch" else f" (latent units); rebuild the engine with a wider --{dim}"
            raise ConfigError(f"{plan.name}: {dim}={n} is outside this engine's profile [{p['min']}, {p['max']}]{why}")


# ---------------------------------------------------------------- the estimate


def estimate(req, plan: Plan) -> Estimate:
    c = plan.config
    shape = plan.geometry.latent_shape(req.num_frames, req.height, req.width)
    batch = 2 if _guided(req) else 1
    tokens = math.prod(shape[1:]) // max(1, math.prod(c.patch_size))
    width = _bytes(plan.dtype)
    pixels = req.num_frames * req.height * req.width
    videos = len(req.prompts) * req.num_videos
    return Estimate(
        device=plan.device.type, weights=plan.weights,
        denoise=_denoise(c, batch, tokens, width) + LATENT_COPIES * batch * math.prod(shape) * 4,
        attention=_attention(plan, batch, tokens, width),
        encode=_encode(req, plan, pixels),
        decode=0 if req.output_type == "latent" else _decode(plan, shape, pixels),
        frames=videos * pixels * FRAME_BYTES[req.output_type])


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _widths(c) -> tuple[int, int, int]:
    """(D, FFN width, heads) of a vdrt model config (a generic diffusers config: its inner dim when known)."""
    dim = getattr(c, "dim", None) or 0
    ffn = getattr(c, "ffn_dim", None) or int(dim * getattr(c, "ffn_mult", 4.0))
    return dim, ffn, getattr(c, "num_heads", 1)


def _denoise(c, batch: int, tokens: int, width: int) -> int:
    dim, ffn, _ = _widths(c)
    text = batch * getattr(c, "text_len", 512) * max(dim, getattr(c, "text_dim", 0)) * width * 4
    return batch * tokens * (ACT_PER_D * dim + ACT_PER_FFN * ffn) * width + text + ACT_FIXED


def _attention(plan: Plan, batch: int, tokens: int, width: int) -> int:
    """The attention op's workspace beyond q, k, v and out (which `_denoise` counts)."""
    dim, _, heads = _widths(plan.config)
    choice = plan.attention
    gpu = plan.device.type == "cuda"
    if choice in ("vdrt-int8", "vdrt-sparse-int8") and not gpu:  # the CPU emulation: L^2 fp32 scores, ~5 temporaries
        return 3 * batch * heads * tokens * tokens * 8
    if choice in ("vdrt-sparse", "vdrt-sparse-int8"):  # tokens reordered; the torch path's per-head masks
        return 4 * batch * tokens * dim * width + (0 if gpu else heads * tokens * tokens)
    if choice == "vdrt-int8":  # q, k codes, fp8 v, a smoothed k
        return batch * tokens * dim * (3 + width)
    if gpu and plan.dtype not in (torch.float16, torch.bfloat16, torch.float32):  # SDPA's math path
        return 2 * batch * heads * tokens * tokens * width
    return 0


def _vae_chunk(plan: Plan, f: int, h: int, w: int) -> int:
    from vdrt.models.wan_vae.fast import MAX_ELEMENTS, largest_activation, plan_chunk

    cfg, opts = plan.vae
    try:
        k = plan_chunk(cfg, opts, f, h, w)
    except ConfigError:  # one frame is over cuDNN's 2^31 elements: the size is refused by the decode itself
        k = 1
    n = min(largest_activation(cfg, opts, k, h, w), 4 * MAX_ELEMENTS)
    return VAE_PER_ELEMENT * n * opts.torch_dtype.itemsize + VAE_FIXED


def _decode(plan: Plan, shape: tuple, pixels: int) -> int:
    floats = 3 * pixels * 4
    if plan.vae is None:
        return pixels * PIXEL_BYTES
    on_host = pixels * PIXEL_BYTES if plan.device.type == "cpu" else 0
    return _vae_chunk(plan, *shape[1:]) + 3 * floats + on_host  # chunks, their concatenation, the float copy


def _encode(req, plan: Plan, pixels: int) -> int:
    if req.mode == "t2v":
        return 0
    frames = pixels * 15  # uint8 as read, then float (3, T, H, W)
    if plan.vae is None:
        return frames
    f = plan.geometry.latent_shape(req.num_frames, req.height, req.width)[1]
    return frames + _vae_chunk(plan, f, req.height // plan.geometry.space_factor,
                               req.width // plan.geometry.space_factor)


# ---------------------------------------------------------------- what is available


def available(device: torch.device) -> int | None:
    """Bytes this process can still allocate on `device` (VDRT_MEMORY_LIMIT when set); None if unknown."""
    limit = os.environ.get("VDRT_MEMORY_LIMIT")
    if limit:
        return parse_size(limit)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        return _host_available()
    return None


def parse_size(text: str) -> int:
    """'12G', '800M', '1.5GiB' or bytes -> bytes."""
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        n = float(t[:-1] if scale > 1 else t)
    except ValueError:
        raise ConfigError(f"VDRT_MEMORY_LIMIT={text!r}: give a size like 12G, 800M or a number of bytes") from None
    if not 0 < n < math.inf:
        raise ConfigError(f"VDRT_MEMORY_LIMIT={text!r} must be a positive size")
    return int(n * scale)


def _host_available() -> int | None:
    mem = _meminfo().get("MemAvailable")
    group = _cgroup_room()
    known = [v for v in (mem, group) if v is not None]
    if not known and hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return min(known) if known else None


def _meminfo() -> dict:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2, else v1); None without a limit."""
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes",
                                                          "memory/memory.usage_in_bytes")):
        try:
            cap = Path("/sys/fs/cgroup", limit).read_text().strip()
            used = int(Path("/sys/fs/cgroup", usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:
            return max(0, int(cap) - used)
    return None


# ---------------------------------------------------------------- plans


def plan_before_load(info, device, dtype, attention: str | None = None) -> Plan:
    """The plan of a model described from its files (`sources.describe`), its weights still to load."""
    vae = _vae_before_load(info, device, dtype)
    weights = _weights_before_load(info, dtype) + (_vae_params(vae[0]) * 4 if vae else 0)
    profiles = _engine_profiles(info) if info.kind == "engine" else None
    return Plan(info.config, info.geometry, torch.device(device), dtype, vae, weights,
                attention or _choice(), profiles, info.name)


def plan_loaded(pipe) -> Plan:
    """The plan of a loaded Pipeline: its engine's device and dtype, its codec, nothing more to load."""
    vae = getattr(pipe.codec, "vae", None)
    profiles = pipe.engine.manifest.get("profiles") if pipe.engine.manifest.get("backend") != "torch" else None
    return Plan(pipe.config, pipe.codec.geometry, torch.device(pipe.engine.device), pipe.engine.dtype,
                (vae.config, vae.opts) if vae is not None else None, 0, _choice(), profiles, pipe.name)


def _choice() -> str:
    from vdrt import ops

    return ops.get_choice("attention")


def _vae_before_load(info, device, dtype):
    """(WanVAEConfig, FastOptions) of the codec `sources.codec_for` will build, or None (pixels)."""
    if info.config.in_channels == 3 or getattr(info.config, "family", None) != "wan":
        return None
    from vdrt.models.wan_vae.config import WanVAEConfig
    from vdrt.models.wan_vae.load import default_options, read_config
    from vdrt.pipeline.codecs import _vae_dtype

    folder = Path(info.name) / "vae"
    cfg = read_config(folder) if info.kind == "diffusers" and folder.is_dir() else \
        WanVAEConfig.from_name("wan2.1-vae", base_dim=32)  # WanVAECodec.random's
    return cfg, default_options(_vae_dtype(dtype, device), device)


def _vae_params(cfg) -> int:
    """An upper bound on the Wan VAE's parameters: its 3x3x3 convs at each stage's width (encoder and decoder)."""
    widths = [cfg.base_dim * m for m in cfg.dim_mult]
    convs = sum(2 * (cfg.num_res_blocks + 2) * 27 * w * w for w in widths)
    return 2 * convs + 2 * 27 * widths[-1] ** 2  # encoder + decoder, their mid blocks


def _weights_before_load(info, dtype) -> int:
    """The denoiser's parameters at `dtype` (an engine: its artifacts; a folder: its files' tensors), plus a
    diffusers folder's encoders."""
    from vdrt.engines import inspect_engine

    if info.kind == "engine":
        return sum(int(a.get("bytes", 0)) for a in inspect_engine(info.name).get("artifacts", {}).values())
    n = param_count(info.config)
    root = Path(info.name) / ("transformer" if info.kind == "diffusers" else "")
    own = n * _bytes(dtype) if n is not None else _folder_bytes(root)
    extra = sum(_folder_bytes(Path(info.name) / d) for d in ("text_encoder", "image_encoder")) \
        if info.kind == "diffusers" else 0
    return own + extra


def _lin(a: int, b: int) -> int:
    return a * b + b


def param_count(c) -> int | None:
    """An upper bound (every optional bias and norm counted) on a vdrt denoiser's parameters, from its config
    alone: building even a meta module costs seconds of imports. None for a generic diffusers config."""
    if getattr(c, "family", None) == "wan":
        return _wan_params(c)
    if getattr(c, "family", None) == "factorized":
        return _factorized_params(c)
    return None


def _wan_params(c) -> int:
    d, i, patch = c.dim, c.image_dim or 0, math.prod(c.patch_size)
    block = 8 * _lin(d, d) + (2 * _lin(d, d) if i else 0) + _lin(d, c.ffn_dim) + _lin(c.ffn_dim, d) + 13 * d
    top = (c.in_channels + c.cond_channels) * patch * d + d + _lin(c.text_dim, d) + _lin(c.freq_dim, d) + \
        2 * _lin(d, d) + _lin(d, 6 * d) + _lin(d, c.out_channels * patch) + 2 * d
    image = 2 * i + _lin(i, i) + _lin(i, d) + 2 * d if i else 0
    return c.num_layers * block + top + image


def _factorized_params(c) -> int:
    from vdrt.models.factorized_blocks import FREQ_DIM

    d, p2 = c.dim, c.patch_size[1] ** 2
    block = 4 * _lin(d, d) + 4 * d + _lin(d, c.ffn_dim) + _lin(c.ffn_dim, d) + 6 * d
    layer = 2 * block + 4 * _lin(d, d)  # spatial (with cross-attention) + temporal
    top = _lin((c.in_channels + c.cond_channels) * p2, d) + _lin(FREQ_DIM, d) + _lin(d, d) + _lin(d, 6 * d) + \
        _lin(c.text_dim, d) + _lin(d, d) + 2 * d + _lin(d, p2 * c.out_channels)
    return c.num_layers * layer + top


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.rglob("*.safetensors") if f.is_file())


def _engine_profiles(info) -> dict | None:
    from vdrt.engines import inspect_engine

    return inspect_engine(info.name).get("profiles")
