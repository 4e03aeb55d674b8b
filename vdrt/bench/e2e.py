"""`vdrt bench --steps N`: one end-to-end clip through `vdrt.Pipeline`, broken into text / denoise / decode / write.

The pipeline runs as a user runs it; its text encoder and codec are wrapped so that each call of
the encoder and each `decode` is timed (synchronized on CUDA). Per timed clip:

    text_ms    the prompt encodings
    decode_ms  the decoder (VAE, or unpatchify for pixel models)
    denoise_ms the rest of the pipeline call: N sampler steps (+ conditioning and moves, small)
    write_ms   `video.save` to a temporary .mp4 (PyAV; a .png folder without it)

`ms` is the median total (pipeline call + write); each stage's value is its median over the clips.
"""
from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch

STAGES = ("text_ms", "denoise_ms", "decode_ms", "write_ms")


class _Clock:
    """Accumulates synchronized stage times of one clip."""

    def __init__(self, device: torch.device):
        self.device, self.ms = device, dict.fromkeys(STAGES, 0.0)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, stage: str, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            self.sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            self.ms[stage] += 1000 * (time.perf_counter() - t0)
            return out
        return run


class _Proxy:
    """Forwards everything to `inner`, with `method` timed into `stage` (`__call__` keeps its signature)."""

    def __init__(self, inner, method: str, clock: _Clock, stage: str):
        self._inner, self._method = inner, method
        timed = clock.timed(stage, getattr(inner, method))
        object.__setattr__(self, method, timed)  # an encoder's `__call__` signature stays inspectable

    def __call__(self, *args, **kwargs):
        return self.__dict__["__call__"](*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def e2e_row(plan, target, size: tuple, dtype: torch.dtype) -> dict:
    """The end-to-end clip row of `plan.steps` steps at pixel size (F, H, W), guidance 1 unless `plan.guidance`."""
    from vdrt.pipeline import Pipeline

    source = plan.model if target.module is None else target.name
    pipe = Pipeline.from_pretrained(source, dtype=dtype, device=plan.device)
    if target.module is not None and target.backend != "torch":
        pipe.engine = target.fn  # the engine just built, not a second copy of the model
    clock = _Clock(plan.device)
    if pipe.text_encoder is not None:
        pipe.text_encoder = _Proxy(pipe.text_encoder, "__call__", clock, "text_ms")
    pipe.codec = _Proxy(pipe.codec, "decode", clock, "decode_ms")
    f, h, w = size
    with tempfile.TemporaryDirectory(prefix="vdrt-bench-") as tmp:
        out = Path(tmp) / ("clip.mp4" if _has_av() else "frames/")
        clip = lambda: _clip(pipe, clock, out, dict(num_frames=f, height=h, width=w, num_steps=plan.steps,  # noqa: E731
                                                     guidance=1.0 if plan.guidance is None else plan.guidance))
        runs = [clip() for _ in range(plan.timing.warmup + _iterations(plan))][plan.timing.warmup:]
    total = [r["ms"] for r in runs]
    return {"impl": f"vdrt-{target.backend} end-to-end clip", "kind": "e2e", "backend": target.backend,
            "steps": plan.steps, "write_format": out.suffix or "png", "iterations": len(runs),
            "ms": statistics.median(total), **{f"p{q:g}_ms": _quantile(total, q) for q in plan.timing.percentiles},
            **{s: statistics.median(r[s] for r in runs) for s in STAGES},
            "ms_per_step": statistics.median(r["denoise_ms"] for r in runs) / plan.steps}


def _clip(pipe, clock: _Clock, out: Path, kw: dict) -> dict:
    clock.ms = dict.fromkeys(STAGES, 0.0)
    clock.sync()
    t0 = time.perf_counter()
    video = pipe("a red circle bouncing", progress=False, **kw)
    clock.sync()
    call = 1000 * (time.perf_counter() - t0)
    t1 = time.perf_counter()
    video.save(out)
    write = 1000 * (time.perf_counter() - t1)
    ms = dict(clock.ms, write_ms=write)
    ms["denoise_ms"] = call - ms["text_ms"] - ms["decode_ms"]
    return {**ms, "ms": call + write}


def _iterations(plan) -> int:
    """Clips to time: a third of --iterations (a clip is many calls), at least 1; one clip with --duration."""
    return max(1, (plan.timing.iterations or 3) // 3)


def _quantile(xs, q):
    from vdrt.bench.timing import quantile

    return quantile(xs, q / 100)


def _has_av() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None
