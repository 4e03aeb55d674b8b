"""Wan2.1 VAE decode (and encode): vdrt's own VAE in fp32 / bf16 / channels-last / sub-pixel / compiled,
chunked causal calls, beside diffusers' AutoencoderKLWan (when it imports), same weights, same run.

    python benchmarks/vae_decode.py --size tiny --out rows.json           # CPU, the tiny config, seconds
    python benchmarks/vae_decode.py --size 480p --out rows.json           # the H200: 81 x 480 x 832, real config
    python benchmarks/vae_decode.py --size study --stages study --out s.json   # precision per layer kind (CPU)

Quality: every decode row carries its PSNR against our fp32 decode (cuDNN TF32 off) of the same
latents: the latents of a rendered clip (moving coloured shapes, drawn here with torch) encoded by
the same VAE, not noise. The weights are random, so the PSNR measures numeric fidelity only, not image quality. Weights: PyTorch's default init, seed 0, norm gains
drawn from 1 + 0.2 N(0, 1).

Stages (--stages): decode, encode, peers (diffusers), aoti (the decoder compiled by
vdrt.export.vae, loaded back; on the lent GPU run with the libstdc++ LD_PRELOAD), layers (every
distinct conv of one chunk, alone, TFLOP/s), profile (top CUDA kernels of one decode), study
(which layer kinds need fp32: float64 reference vs bf16 per kind, CPU).

Timing: CUDA events (perf_counter on CPU), the median of --reps calls after the first (one for
the fp32 and diffusers rows); the first call's excess over the median is reported as
compile/warm-up time (`compile_s`, cuDNN autotuning included), apart from the steady state.
`tflops` is the reference structure's FLOPs (275 TFLOP for a 480p x 81f decode) over the time:
the sub-pixel variants do 4.6% fewer. The H200's bf16 GEMM ceiling is 790 TFLOP/s.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import math
import statistics
import time
from dataclasses import dataclass

import torch

from common import Row, meta, write_rows

log = logging.getLogger("vae_decode")
CEILING_TFLOPS = 790.0  # bf16 GEMM 8192^3 on the H200 (DESIGN.md)
REF = "ours-fp32 (the reference: cuDNN TF32 off)"


@dataclass(frozen=True)
class Config:
    size: str
    vae: str
    frames: int
    height: int
    width: int
    reps: int
    device: str

    @property
    def case(self) -> str:
        return f"{self.vae} {self.frames}x{self.height}x{self.width}"


SIZES = {
    "tiny": dict(vae="wan-vae-tiny", frames=9, height=32, width=48),
    "small": dict(vae="wan2.1-vae", frames=9, height=64, width=64),
    "study": dict(vae="wan2.1-vae", frames=9, height=48, width=48),
    "480p": dict(vae="wan2.1-vae", frames=81, height=480, width=832),
}


@dataclass
class Result(Row):
    variant: str = ""
    first_ms: float | None = None
    compile_s: float | None = None
    psnr_db: float | None = None
    snr_db: float | None = None
    tflops: float | None = None
    peak_gb: float | None = None
    total_ms: float | None = None
    options: str | None = None
    note: str | None = None
    error: str | None = None


def variants(device: str) -> dict[str, object]:
    """name -> FastOptions (our paths) or a diffusers dtype (the peer)."""
    from vdrt.models.wan_vae.fast import FastOptions

    cuda = device == "cuda"
    ref = FastOptions(dtype="float32", channels_last=False, subpixel=False, cudnn_benchmark=False)
    bf = FastOptions(cudnn_benchmark=cuda)
    return {
        "ours-fp32": ref,
        "ours-bf16": dataclasses.replace(bf, channels_last=False, subpixel=False),
        "ours-bf16-cl": dataclasses.replace(bf, subpixel=False),
        "ours-bf16-cl-sub": bf,
        "ours-bf16-cl-sub-frame": dataclasses.replace(bf, chunk=1),
        "ours-bf16-cl-sub-taps2d": dataclasses.replace(bf, conv_impl="taps2d"),
        "ours-bf16-cl-sub-keep(conv_out)": dataclasses.replace(bf, keep_fp32=("norm", "conv_out")),
        "ours-bf16-cl-sub-allbf16": dataclasses.replace(bf, keep_fp32=()),
        "ours-bf16-cl-sub-compile": dataclasses.replace(bf, compile="chunk"),
        "ours-bf16-cl-sub-compile-c10": dataclasses.replace(bf, compile="chunk", chunk=10),
        "ours-bf16-cl-sub-c10": dataclasses.replace(bf, chunk=10),
        "ours-bf16-cl-sub-regions": dataclasses.replace(bf, compile="regions"),
        "ours-bf16-cl-sub-regions-c10": dataclasses.replace(bf, compile="regions", chunk=10),
        "diffusers-fp32": torch.float32,
        "diffusers-bf16": torch.bfloat16,
    }


DEFAULT_DECODE = ("ours-bf16", "ours-bf16-cl", "ours-bf16-cl-sub", "ours-bf16-cl-sub-frame",
                  "ours-bf16-cl-sub-taps2d", "ours-bf16-cl-sub-keep(conv_out)", "ours-bf16-cl-sub-allbf16",
                  "ours-bf16-cl-sub-compile")
DEFAULT_ENCODE = ("ours-bf16", "ours-bf16-cl")


# --- the structured clip ---------------------------------------------------------------------------
def render_clip(frames: int, height: int, width: int, seed: int = 0, shapes: int = 6, device="cpu") -> torch.Tensor:
    """Moving, bouncing discs and squares with soft edges over a drifting gradient: (1, 3, T, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, frames, device=device).view(-1, 1, 1)
    y = torch.linspace(0, 1, height, device=device).view(1, -1, 1)
    x = torch.linspace(0, 1, width, device=device).view(1, 1, -1)
    c0, c1 = (torch.rand(2, 3, 1, 1, 1, generator=g) * 0.6).to(device)
    img = c0 * (1 - y) + c1 * y + 0.08 * torch.sin(12 * x + 3 * t + 2 * y)  # (3, T, H, W)
    px = 1.5 / min(height, width)
    for _ in range(shapes):
        colour = torch.rand(3, 1, 1, 1, generator=g).to(device)
        r = 0.06 + 0.12 * torch.rand(1, generator=g).item()
        p0, v = torch.rand(2, generator=g), (torch.rand(2, generator=g) - 0.5) * 1.6
        cy, cx = (_bounce(p0[i] + v[i] * t) for i in range(2))
        dy, dx = (y - cy).abs(), (x - cx).abs() * width / height
        dist = torch.maximum(dx, dy) - r if torch.rand(1, generator=g).item() < 0.5 else (dx ** 2 + dy ** 2).sqrt() - r
        alpha = torch.sigmoid(-dist / px)  # (T, H, W)
        img = img * (1 - alpha) + colour * alpha
    return (img.clamp(0, 1) * 2 - 1)[None]


def _bounce(p: torch.Tensor) -> torch.Tensor:
    """Positions reflected into [0, 1] (a triangle wave): shapes bounce off the frame edges."""
    return 1 - (p.remainder(2) - 1).abs()


def random_vae(vae_name: str, seed: int = 0):
    """PyTorch's default init (seeded), with the norm gains drawn from 1 + 0.2 N(0, 1) instead of all ones
    (a trained VAE's are not ones, and bf16 rounds 1.0 exactly)."""
    from vdrt.models.wan_vae import WanVAE, WanVAEConfig

    torch.manual_seed(seed)
    m = WanVAE(WanVAEConfig.from_name(vae_name)).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.mul_(1 + 0.2 * torch.randn_like(p))
    return m


# --- measuring -------------------------------------------------------------------------------------
def psnr(a: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of `a` against `ref`, both in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.float() - ref.float()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def snr(a: torch.Tensor, ref: torch.Tensor) -> float:
    err = ((a.float() - ref.float()) ** 2).sum().item()
    return math.inf if err == 0 else 10 * math.log10((ref.float() ** 2).sum().item() / err)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps: int, device: str):
    """(first call ms, median ms of `reps` more calls, last output)."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    first = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(reps):
        del out
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            out = fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return first, statistics.median(times), out


def model_flops(cfg, latent_shape: tuple, encode: bool) -> float:
    """FLOPs of one decode (or encode) of the reference structure (3x3 upsample convs), counted on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    from vdrt.models.wan_vae import WanVAE

    b, _, f, h, w = latent_shape
    with torch.device("meta"):
        m = WanVAE(cfg)
        x = torch.empty(b, 3, cfg.time_factor * (f - 1) + 1, 8 * h, 8 * w) if encode else torch.empty(latent_shape)
    state, fn = {}, (m.encode_chunk if encode else m.decode_chunk)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(x[:, :, :1], state)
        if x.shape[2] > 1:
            fn(x[:, :, 1:], state)
    return float(counter.get_total_flops())


# --- the model under test --------------------------------------------------------------------------
class Bench:
    """One random-weight VAE (fp32 state on the device), the clip, its latents and the fp32 reference decode."""

    def __init__(self, cfg: Config):
        from vdrt.models.wan_vae import WanVAEConfig
        from vdrt.models.wan_vae.fast import FastWanVAE

        self.cfg, self.dev = cfg, cfg.device
        self.vcfg = WanVAEConfig.from_name(cfg.vae)
        self.state = {k: v.to(cfg.device) for k, v in random_vae(cfg.vae).state_dict().items()}
        self.meta = meta()
        self.rows: list[Result] = []
        self.clip = render_clip(cfg.frames, cfg.height, cfg.width, device=cfg.device)
        self.ref = FastWanVAE(self.fresh(), variants(cfg.device)["ours-fp32"])
        first, ms, z = timed(lambda: self.ref.encode(self.clip), 1, self.dev)
        self.z = z.float()  # (1, z, F, h, w): the structured clip's latents
        self.enc_flops = model_flops(self.vcfg, tuple(self.z.shape), encode=True)
        self.dec_flops = model_flops(self.vcfg, tuple(self.z.shape), encode=False)
        self.add("vae_encode", REF, self.ref.opts, ms=ms, first_ms=first, tflops=self.enc_flops / ms / 1e9)
        first, ms, video = timed(lambda: self.ref.decode(self.z), 1, self.dev)
        self.ref_video = video.float()
        clamped = (self.ref_video.abs() >= 1).float().mean().item()
        self.add("vae_decode", REF, self.ref.opts, ms=ms, first_ms=first, tflops=self.dec_flops / ms / 1e9,
                 note=f"std {self.ref_video.std().item():.3f}, {100 * clamped:.2f}% clamped; latents std "
                      f"{self.z.std().item():.3f}")

    def fresh(self):
        from vdrt.models.wan_vae import WanVAE

        with torch.device("meta"):
            m = WanVAE(self.vcfg)
        m.load_state_dict({k: v.clone() for k, v in self.state.items()}, assign=True)
        return m

    def diffusers(self, dtype):
        from diffusers import AutoencoderKLWan

        m = AutoencoderKLWan(**self.vcfg.to_diffusers())
        m.load_state_dict(self.state)
        return m.to(self.dev, dtype).eval().requires_grad_(False)

    def add(self, bench: str, variant: str, options=None, **kw) -> None:
        if self.dev == "cuda":
            kw.setdefault("peak_gb", torch.cuda.max_memory_allocated() / 1e9)
        case = self.cfg.case + (f" latents {tuple(self.z.shape)}" if bench == "vae_decode" else "")
        self.rows.append(Result(bench, case, variant, kw.pop("ms", None), **self.meta, variant=variant,
                                options=None if options is None else str(options), **kw))
        log.info("%s", self.rows[-1])

    def measure(self, bench: str, name: str, options, fn, flops: float, quality, reps: int | None = None) -> None:
        """Time fn, score its output with quality(out) -> dict, add a row; a failure becomes a row with its error."""
        try:
            if self.dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            first, ms, out = timed(fn, reps or self.cfg.reps, self.dev)
            self.add(bench, name, options, ms=ms, first_ms=first, compile_s=max(0.0, first - ms) / 1e3,
                     tflops=flops / ms / 1e9, **quality(out))
        except Exception as e:  # one failing variant must not lose the others' numbers
            log.exception("%s %s failed", bench, name)
            self.add(bench, name, options, error=f"{type(e).__name__}: {e}"[:300])
        gc.collect()
        if self.dev == "cuda":
            torch.cuda.empty_cache()


def run_decode(b: Bench, names) -> None:
    from vdrt.models.wan_vae.fast import FastWanVAE

    table = variants(b.dev)
    for name in names:
        opts = table[name]
        if not hasattr(opts, "chunk"):
            continue
        vae = FastWanVAE(b.fresh(), opts)
        b.measure("vae_decode", name, opts, lambda: vae.decode(b.z), b.dec_flops,
                  lambda out: {"psnr_db": psnr(out, b.ref_video)})


def run_peers(b: Bench) -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        b.add("vae_decode", "diffusers", error="diffusers is not installed (carry its wheel in .whl/)")
        return
    for name, dtype in (("diffusers-fp32 (tf32 convs: PyTorch default)", torch.float32),
                        ("diffusers-bf16", torch.bfloat16)):
        dm = b.diffusers(dtype)
        z = b.z.to(dtype)
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=True):
            b.measure("vae_decode", name, None, lambda: _no_grad(lambda: dm.decode(z).sample), b.dec_flops,
                      lambda out: {"psnr_db": psnr(out, b.ref_video)}, reps=1)
        if dtype == torch.float32:
            x = b.clip.to(dtype)
            b.measure("vae_encode", name, None, lambda: _no_grad(lambda: dm.encode(x).latent_dist.mode()),
                      b.enc_flops, lambda out: {"snr_db": snr(out, b.z)}, reps=1)


def _no_grad(fn):
    with torch.no_grad():
        return fn()


def run_encode(b: Bench, names) -> None:
    from vdrt.models.wan_vae.fast import FastOptions, FastWanVAE

    table = {**variants(b.dev), "ours-bf16-cl-compile": FastOptions(compile="chunk", cudnn_benchmark=b.dev == "cuda")}
    table = {k: v for k, v in table.items() if hasattr(v, "chunk")}
    for name in names:
        vae = FastWanVAE(b.fresh(), table[name])
        b.measure("vae_encode", name, table[name], lambda: vae.encode(b.clip), b.enc_flops,
                  lambda out: {"snr_db": snr(out, b.z)})


# --- which layers need fp32 (CPU): float64 reference vs bf16 per layer kind --------------------------
def run_study(cfg: Config) -> list[Result]:
    """Decode the clip's latents with the parameters of some layer kinds in bf16 and the rest in float64
    (each layer computes in its weights' dtype: the same precision policy as the fast path, with fp64
    standing in for fp32): all kinds in bf16, all but one, and one alone; PSNR against all-fp64."""
    import copy

    from vdrt.models.wan_vae.fast import KINDS, set_precision

    model = random_vae(cfg.vae).double()
    clip = render_clip(cfg.frames, cfg.height, cfg.width).double()
    z = model.encode(clip)
    ref = model.decode(z)
    m, rows = meta(), []
    case = f"{cfg.case} decode, fp64 reference"
    plans = [("all bf16", KINDS)] + [(f"bf16 but {k} fp64", tuple(set(KINDS) - {k})) for k in KINDS] + \
        [(f"only {k} bf16", (k,)) for k in KINDS]
    for name, low in plans:
        mm = copy.deepcopy(model)
        set_precision(mm, torch.bfloat16, torch.float64, tuple(set(KINDS) - set(low)))
        t0 = time.perf_counter()
        out = mm.decode(z)
        rows.append(Result("vae_precision", case, name, (time.perf_counter() - t0) * 1e3, **m, variant=name,
                           psnr_db=psnr(out, ref), snr_db=snr(out, ref)))
        log.info("%s: %.2f dB", name, rows[-1].psnr_db)
    mm = copy.deepcopy(model)
    set_precision(mm, torch.bfloat16, torch.float64, ())
    rows.append(Result("vae_precision", f"{cfg.case} encode, fp64 reference", "all bf16", None, **m,
                       variant="all bf16", snr_db=snr(mm.encode(clip), z)))
    return rows


# --- the decoder compiled with AOTInductor (an engine dir's vae/), loaded back and timed ---------------
def run_aoti(b: Bench, name: str = "ours-bf16-cl-sub") -> None:
    import tempfile
    from pathlib import Path

    from vdrt.export.vae import export_decoder
    from vdrt.engines.vae_decoder import load_compiled_decoder
    from vdrt.models.wan_vae.fast import FastWanVAE

    opts = variants(b.dev)[name]
    with tempfile.TemporaryDirectory() as d:
        try:
            t0 = time.perf_counter()
            m = export_decoder(FastWanVAE(b.fresh(), opts), Path(d) / "vae", tuple(b.z.shape[3:]))
            build_s = time.perf_counter() - t0
            dec = load_compiled_decoder(Path(d) / "vae", b.dev)
        except Exception as e:
            log.exception("aoti export failed")
            b.add("vae_decode", f"aoti {name}", opts, error=f"{type(e).__name__}: {e}"[:300])
            return
        b.measure("vae_decode", f"aoti {name} (chunk {m['chunk']}, build {build_s:.0f} s)", opts,
                  lambda: dec.decode(b.z), b.dec_flops, lambda out: {"psnr_db": psnr(out, b.ref_video)})


# --- every distinct conv of one chunk, alone; and a kernel profile ---------------------------------
class _ConvLog(torch.overrides.TorchFunctionMode):
    """Records each distinct conv call (function, input shape and layout, weight, stride, padding)."""

    def __init__(self):
        super().__init__()
        self.seen: dict[tuple, list] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.conv2d, torch.conv3d, torch.nn.functional.conv2d, torch.nn.functional.conv3d):
            x, w = args[0], args[1]
            fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
            key = (func.__name__, tuple(x.shape), x.is_contiguous(memory_format=fmt), tuple(w.shape), str(args[3:]))
            self.seen.setdefault(key, [func, args, kwargs, 0])[3] += 1
        return func(*args, **kwargs)


def run_layers(b: Bench, name: str = "ours-bf16-cl-sub") -> None:
    """Each distinct conv of one steady-state chunk, timed alone (cuDNN autotuned): TFLOP/s and its
    share of the chunk, for conv3d and the taps2d alternative."""
    from vdrt.models.wan_vae.fast import ChunkStep, FastWanVAE, plan_chunk

    vae = FastWanVAE(b.fresh(), variants(b.dev)[name])
    k = plan_chunk(vae.config, vae.opts, *b.z.shape[2:])
    state, z = {}, vae._input(b.z)
    vae._call(vae.model.decode_chunk, z[:, :, :1], state)
    log_ = _ConvLog()
    with log_:
        vae._call(ChunkStep(vae.model.part(False), list(state)), z[:, :, 1:1 + k], *state.values())
    for (fname, xshape, cl, wshape, rest), (func, args, kwargs, count) in log_.seen.items():
        x = torch.randn_like(args[0])
        fn = lambda: vae._call(func, x, *args[1:], **kwargs)  # noqa: E731
        try:
            ms = timed(fn, 10, b.dev)[1]
            flops = 2 * fn().numel() * args[1][0].numel()
            b.add("vae_conv", f"{fname} x{xshape} w{wshape} {'cl' if cl else 'ncdhw'} {rest}", None, ms=ms,
                  tflops=flops / ms / 1e9, total_ms=ms * count, note=f"{count} calls per {k}-frame chunk")
        except Exception as e:
            b.add("vae_conv", f"{fname} x{xshape} w{wshape}", None, error=f"{type(e).__name__}: {e}"[:300])


def run_profile(b: Bench, name: str = "ours-bf16-cl-sub", top: int = 25) -> None:
    """The top CUDA kernels of one decode (self device time), and conv vs the rest."""
    from vdrt.models.wan_vae.fast import FastWanVAE

    vae = FastWanVAE(b.fresh(), variants(b.dev)[name])
    vae.decode(b.z)
    _sync(b.dev)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if b.dev == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        vae.decode(b.z)
        _sync(b.dev)
    evs = [e for e in prof.key_averages() if _self_us(e) > 0 and (b.dev != "cuda" or e.device_type.name == "CUDA")]
    evs.sort(key=_self_us, reverse=True)
    total = sum(_self_us(e) for e in evs) / 1e3
    conv = sum(_self_us(e) for e in evs if _is_conv(e.key)) / 1e3
    b.add("vae_profile", f"{name}: all kernels", None, ms=total, note=f"conv kernels {conv:.1f} ms")
    for e in evs[:top]:
        b.add("vae_profile", e.key[:120], None, ms=_self_us(e) / 1e3, note=f"{e.count} calls")


def _self_us(e) -> float:
    return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or
                 (e.self_cpu_time_total if not hasattr(e, "device_type") or e.device_type.name == "CPU" else 0))


def _is_conv(name: str) -> bool:
    return any(s in name.lower() for s in ("conv", "xmma", "implicit", "cudnn", "sm90_", "gemm", "wgrad", "fprop"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--stages", default="decode,encode,peers")
    ap.add_argument("--decode", default=",".join(DEFAULT_DECODE), help="decode variants (comma-separated)")
    ap.add_argument("--encode", default=",".join(DEFAULT_ENCODE), help="encode variants (comma-separated)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = Config(size=args.size, reps=args.reps, device=args.device, **SIZES[args.size])
    stages = args.stages.split(",")
    bad = set(stages) - {"decode", "encode", "peers", "layers", "profile", "study", "aoti"}
    unknown = set(args.decode.split(",")) - set(variants(cfg.device))
    unknown |= set(args.encode.split(",")) - set(variants(cfg.device)) - {"ours-bf16-cl-compile"}
    if bad or unknown:
        ap.error(f"unknown stages {sorted(bad)} / decode variants {sorted(unknown)}")
    run(cfg, stages, args.decode.split(","), args.encode.split(","), args.out)


def run(cfg: Config, stages, decode_names, encode_names, out) -> list[dict]:
    torch.backends.cudnn.allow_tf32 = False  # the fp32 reference is fp32; the peers opt back in
    torch.backends.cuda.matmul.allow_tf32 = False
    if "study" in stages:
        rows = run_study(cfg)
        write_rows(rows, out)
        return rows
    b = Bench(cfg)
    if "decode" in stages:
        run_decode(b, decode_names)
    if "encode" in stages:
        run_encode(b, encode_names)
    if "peers" in stages:
        run_peers(b)
    if "aoti" in stages:
        run_aoti(b)
    if "layers" in stages:
        run_layers(b)
    if "profile" in stages:
        run_profile(b)
    write_rows(b.rows, out)
    return b.rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
