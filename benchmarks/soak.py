"""Soak: many generations in one process, memory flat and latency stable; and the memory estimate against
the measured peak (the GPU calibration of vdrt.pipeline.memory).

    python benchmarks/soak.py --model vdrt-tiny --n 1000 --out rows.json           # the default pipeline
    python benchmarks/soak.py --model vdrt-tiny --n 1000 --backend aoti --out a.json  # its AOTI engine
    python benchmarks/soak.py --stage estimate --out est.json                       # estimate vs peak (GPU)

A soak row holds p50 / p99 latency over the whole run and over its first and last quarters, and the host
RSS and (on a GPU) the allocator's allocated / reserved bytes at the start and end of the timed part,
with a least-squares slope per 100 generations. `flat`: the slope is under 1 MiB per 100 generations
(RSS: 4 MiB) and the end is within 2% (RSS: 64 MiB) of the start; `stable`: the last quarter's p99 is
within 25% of the first quarter's. A second file (`--series`) keeps every generation's numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import Row, meta

MiB = 1 << 20


@dataclasses.dataclass
class SoakRow(Row):
    n: int = 0
    warmup: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p99_first_quarter_ms: float = 0.0
    p99_last_quarter_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_slope_mb_per_100: float = 0.0
    cuda_allocated_start_mb: float | None = None
    cuda_allocated_end_mb: float | None = None
    cuda_allocated_slope_mb_per_100: float | None = None
    cuda_reserved_end_mb: float | None = None
    cuda_max_allocated_mb: float | None = None
    flat: bool = False
    stable: bool = False
    stopped_early: bool = False


@dataclasses.dataclass
class EstimateRow(Row):
    estimate_gb: float = 0.0
    peak_gb: float = 0.0
    ratio: float = 0.0
    parts: str = ""


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _slope(y: list[float]) -> float:
    """Least-squares slope per 100 samples."""
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y))
    return float(np.polyfit(x, np.asarray(y, float), 1)[0] * 100)


def _p99(a) -> float:
    return float(np.percentile(a, 99)) if len(a) else 0.0


def pipeline(args):
    import vdrt

    source = args.model
    if args.backend != "torch":
        source = build_engine(args)
    pipe = vdrt.Pipeline.from_pretrained(source, device=args.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_engine(args) -> str:
    """The model built into an engine directory at the soak size (the build cache makes a rerun cheap)."""
    import vdrt
    import vdrt.export
    from vdrt.pipeline.sources import describe

    info = describe(args.model)
    den = vdrt.load_denoiser(args.model, device=args.device,
                             dtype=torch.bfloat16 if torch.device(args.device).type == "cuda" else torch.float32)
    d = info.defaults
    f, h, w = info.geometry.latent_shape(args.frames or d.num_frames, args.height or d.height, args.width or d.width)[1:]
    shapes = {"frames": (f, f, f), "height": (h, h, h), "width": (w, w, w), "batch": (1, 2, 2)}
    out = Path(args.engine_dir)
    vdrt.export.build(den, backend=args.backend, out=out, shapes=shapes, load=False, force=True,
                      precision="bf16" if torch.device(args.device).type == "cuda" else "fp32")
    return str(out)


def soak(args) -> tuple[SoakRow, dict]:
    pipe = pipeline(args)
    kw = {k: v for k, v in dict(num_frames=args.frames, height=args.height, width=args.width,
                                num_steps=args.steps).items() if v is not None}
    cuda = pipe.device.type == "cuda"
    series = {"ms": [], "rss": [], "allocated": [], "reserved": []}
    t_end = time.perf_counter() + args.seconds
    stopped = False
    for i in range(args.warmup + args.n):
        if time.perf_counter() > t_end:
            stopped = True
            break
        t0 = time.perf_counter()
        video = pipe(f"a red circle bouncing {i % 7}", seed=i, **kw)
        if cuda:
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1e3
        assert np.isfinite(video.frames).all() and video.frames.dtype == np.uint8
        del video
        if i < args.warmup:
            continue
        series["ms"].append(ms)
        series["rss"].append(rss() / MiB)
        if cuda:
            series["allocated"].append(torch.cuda.memory_allocated() / MiB)
            series["reserved"].append(torch.cuda.memory_reserved() / MiB)
    return summarize(args, pipe, series, cuda, stopped), series


def summarize(args, pipe, s: dict, cuda: bool, stopped: bool) -> SoakRow:
    ms, q = s["ms"], max(1, len(s["ms"]) // 4)
    rss_flat = len(s["rss"]) > 1 and _slope(s["rss"]) < 4 and abs(s["rss"][-1] - s["rss"][0]) < 64
    row = SoakRow(bench="soak", case=f"{pipe.name} {args.frames}x{args.height}x{args.width} {args.steps} steps",
                  impl=args.backend, ms=float(np.median(ms)) if ms else None, **meta(), n=len(ms), warmup=args.warmup,
                  p50_ms=float(np.median(ms)) if ms else 0.0, p99_ms=_p99(ms), p99_first_quarter_ms=_p99(ms[:q]),
                  p99_last_quarter_ms=_p99(ms[-q:]), rss_start_mb=s["rss"][0] if s["rss"] else 0.0,
                  rss_end_mb=s["rss"][-1] if s["rss"] else 0.0, rss_slope_mb_per_100=_slope(s["rss"]),
                  stopped_early=stopped)
    flat = rss_flat
    if cuda and s["allocated"]:
        a = s["allocated"]
        row.cuda_allocated_start_mb, row.cuda_allocated_end_mb = a[0], a[-1]
        row.cuda_allocated_slope_mb_per_100 = _slope(a)
        row.cuda_reserved_end_mb = s["reserved"][-1]
        row.cuda_max_allocated_mb = torch.cuda.max_memory_allocated() / MiB
        flat = flat and _slope(a) < 1 and abs(a[-1] - a[0]) <= 0.02 * max(a[0], 1)
    row.flat = bool(flat)
    row.stable = bool(ms) and row.p99_last_quarter_ms <= 1.25 * row.p99_first_quarter_ms
    return row


ESTIMATE_CASES = {  # (model, frames, height, width, guidance): what the GPU calibration measures
    "gpu": [("wan-tiny", 81, 480, 832, 5.0), ("wan-tiny", 17, 720, 1280, 1.0), ("wan2.1-t2v-1.3b", 17, 480, 832, 5.0),
            ("wan2.1-t2v-1.3b", 81, 480, 832, 5.0), ("factorized-tiny", 16, 512, 512, 5.0)],
    "cpu": [("wan-tiny", 5, 64, 64, 1.0), ("factorized-tiny", 4, 64, 64, 5.0)],
}


def estimates(args) -> list[EstimateRow]:
    """vdrt.pipeline.memory's estimate (weights loaded) against the measured peak of one 2-step generation."""
    import vdrt
    from vdrt.pipeline import memory

    rows, cuda = [], torch.device(args.device).type == "cuda"
    for model, f, h, w, g in ESTIMATE_CASES["gpu" if cuda else "cpu"]:
        pipe = vdrt.Pipeline.from_pretrained(model, device=args.device)
        pipe.set_progress_bar_config(disable=True)
        req = vdrt.GenerateRequest(prompt="x", num_frames=f, height=h, width=w, num_steps=2, guidance=g)
        est = memory.estimate(req.resolved(pipe.defaults, pipe.codec.geometry), memory.plan_loaded(pipe))
        base = _measure_start(cuda)
        pipe(req)
        peak = _measure_peak(cuda) - base
        rows.append(EstimateRow(bench="memory_estimate", case=f"{model} {f}x{h}x{w} g{g:g}", impl="torch", ms=None,
                                **meta(), estimate_gb=est.device_peak / 2**30, peak_gb=peak / 2**30,
                                ratio=est.device_peak / max(peak, 1), parts=est.parts()))
        print(f"{rows[-1].case}: estimate {rows[-1].estimate_gb:.2f} GB, peak {rows[-1].peak_gb:.2f} GB "
              f"({rows[-1].ratio:.2f}x)", flush=True)
        del pipe
        if cuda:
            torch.cuda.empty_cache()
    return rows


def _measure_start(cuda: bool) -> int:
    import gc

    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss()


def _measure_peak(cuda: bool) -> int:
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=("soak", "estimate"), default="soak")
    p.add_argument("--model", default="vdrt-tiny")
    p.add_argument("--backend", choices=("torch", "aoti", "onnx"), default="torch")
    p.add_argument("--engine-dir", default="/tmp/vdrt_soak_engine")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=1000, help="timed generations")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seconds", type=float, default=240, help="stop early past this budget (the row says so)")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON rows")
    p.add_argument("--series", default=None, help="JSON: every generation's ms / rss / allocated / reserved")
    args = p.parse_args(argv)
    if args.stage == "estimate":
        rows = [dataclasses.asdict(r) for r in estimates(args)]
    else:
        row, series = soak(args)
        rows = [dataclasses.asdict(row)]
        print(json.dumps(rows[0], indent=1), flush=True)
        if args.series:
            Path(args.series).write_text(json.dumps(series))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
