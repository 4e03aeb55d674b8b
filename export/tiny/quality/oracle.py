"""The quality oracle: ground-truth scores of a video generator on held-out procedural clips.

    gen = CardGenerator.from_card("runs/x/vdrt-tiny-wan.json", device="cuda")
    result = evaluate(gen, n_clips=256, geometry=Geometry(17, 64, 64))    # {"summary", "clips", ...}
    print(table([result, *baselines(256)]))

`evaluate(generate_fn, ...)` scores any `generate_fn(prompts, mode, video=None, known_frames=None,
seed=0, size=None) -> uint8 (N, T, H, W, 3)` on clips 0..N-1 of the TEST split (never trained on),
clip i with noise seed `seed + i` (so two configurations, or two batch sizes, see the same noise):

- t2v (from the test captions), scored by the analytic detector: per clip the share of captioned
  objects with the right colour / shape / size / motion, `count_ok` (as many objects as captioned),
  `extra` (unasked objects), `adherent` (every attribute of every object right, the right count);
  and temporal coherence (`coherence`): count stable, no teleport, area stable, persistent, no
  split, `coherent` (all of them);
- extend (the first `known` frames given): pooled MSE / PSNR (uncapped), SSIM, centroid error and
  mask IoU of the true objects over the generated frames;
- interpolate (first and last frames given): the same over the frames between.
The summary pools per-clip values (PSNR from the mean MSE). `baselines(n)` scores the trivial
generators of `baselines.py` on the same clips; `compare` (compare.py) gives paired differences.
"""
from __future__ import annotations

import inspect
import logging
import time

import numpy as np

from vdrt.errors import ConfigError
from vdrt.export.tiny.data.world import Geometry

log = logging.getLogger(__name__)

KNOWN_FRAMES = 4
TASKS = ("t2v", "extend", "interpolate")
ATTRS = ("colour", "shape", "size", "motion")
EXTEND_BASELINES = ("repeat_last", "constant_velocity", "constant_velocity_bounce", "erased", "teleport")
INTERPOLATE_BASELINES = ("blend", "linear", "erased", "teleport")


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _call(fn, prompts, mode, geometry: Geometry, seed: int, **kw) -> np.ndarray:
    from vdrt.export.tiny.quality.generate import checked

    extra = {k: v for k, v in (("seed", seed), ("size", geometry.shape)) if _accepts(fn, k)}
    return checked(fn(prompts, mode, **kw, **extra), len(prompts), geometry.shape)


# ---------------------------------------------------------------- per-clip scores


def t2v_row(frames: np.ndarray, text: str) -> dict:
    """One t2v clip: attribute shares, count_ok, extra, adherent, coherence flags and jumps."""
    from vdrt.export.tiny.data.captions import parse_caption
    from vdrt.export.tiny.quality.coherence import KEYS, coherence
    from vdrt.export.tiny.quality.detector import score

    s, c = score(frames, text), coherence(frames)
    count_ok = c["objects"] == len(parse_caption(text)) and s["extra_objects"] == 0
    row = {a: s[a] for a in ATTRS}
    row.update(count_ok=count_ok, extra=s["extra_objects"], adherent=bool(s["accuracy"] == 1.0 and count_ok),
               jumps=c["jumps"], **{k: c[k] for k in KEYS})
    return row


def frame_row(pred: np.ndarray, truth: np.ndarray, frames) -> dict:
    """One clip's `forecast_metrics` over its generated frames `frames`."""
    from vdrt.export.tiny.quality.metrics import forecast_metrics

    r = forecast_metrics(pred, truth, frames)
    return {k: r[k] for k in ("mse", "ssim", "centroid_error", "iou")}


def _star(args):
    fn, a = args
    return fn(*a)


def per_clip(fn, arg_rows: list[tuple], workers: int) -> dict[str, list]:
    """fn(*args) for every clip, in `workers` forked processes (numpy only in them), as columns."""
    if workers > 1 and len(arg_rows) >= 4 * workers:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            rows = pool.map(_star, [(fn, a) for a in arg_rows], chunksize=max(1, len(arg_rows) // (4 * workers)))
    else:
        rows = [fn(*a) for a in arg_rows]
    return {k: [r.get(k) for r in rows] for k in rows[0]}


def summarise(per_clip: dict[str, dict[str, list]]) -> dict[str, float | None]:
    """Pool per-clip values into one number each: means (None ignored); PSNR from the mean MSE."""
    from vdrt.export.tiny.quality.metrics import psnr_of

    out = {}
    for task, cols in per_clip.items():
        for k, vals in cols.items():
            vals = [float(v) for v in vals if v is not None]
            out[f"{task}.{k}"] = float(np.mean(vals)) if vals else None
        if "mse" in cols:
            out[f"{task}.psnr"] = psnr_of(out[f"{task}.mse"])
    return out


# ---------------------------------------------------------------- evaluation


def held_out(n_clips: int, geometry: Geometry):
    from vdrt.export.tiny.data.procedural import batch

    if n_clips < 1:
        raise ConfigError(f"n_clips must be >= 1, got {n_clips}")
    return batch("test", 0, n_clips, geometry)


def default_workers() -> int:
    import os

    return min(8, os.cpu_count() or 1)


def evaluate(generate_fn, n_clips: int = 64, seed: int = 0, geometry: Geometry = Geometry(),
             known: int = KNOWN_FRAMES, tasks=TASKS, name: str = "", workers: int | None = None) -> dict:
    """Score `generate_fn` on test clips 0..n_clips-1 (see the module doc). Returns {name, clips, geometry,
    seed, known, summary, per_clip: {task: {metric: [per clip]}}, outputs: {task: uint8 clips}, seconds}."""
    bad = [t for t in tasks if t not in TASKS]
    if bad or not 1 <= known < geometry.frames:
        raise ConfigError(f"tasks {bad} unknown (use {TASKS}) or known={known} outside 1..{geometry.frames - 1}")
    truth, captions = held_out(n_clips, geometry)
    scores, outputs, seconds = {}, {}, {}
    for task in tasks:
        t0 = time.perf_counter()
        if task == "t2v":
            outputs[task] = _call(generate_fn, captions, "t2v", geometry, seed)
        else:
            kw = {"known_frames": known} if task == "extend" else {}
            outputs[task] = _call(generate_fn, captions, task, geometry, seed, video=truth, **kw)
        seconds[task] = time.perf_counter() - t0
        scores[task] = _score(task, outputs[task], truth, captions, known,
                                default_workers() if workers is None else workers)
    return {"name": name or getattr(generate_fn, "name", "") or type(generate_fn).__name__, "clips": n_clips,
            "geometry": list(geometry.shape), "seed": seed, "known": known, "summary": summarise(scores),
            "per_clip": scores, "outputs": outputs,
            "ms_per_clip": {t: 1000 * s / n_clips for t, s in seconds.items()}}


def _score(task: str, out: np.ndarray, truth: np.ndarray, captions, known: int, workers: int) -> dict[str, list]:
    if task == "t2v":
        return per_clip(t2v_row, list(zip(out, captions)), workers)
    frames = list(range(known, truth.shape[1])) if task == "extend" else list(range(1, truth.shape[1] - 1))
    return per_clip(frame_row, [(p, t, frames) for p, t in zip(out, truth)], workers)


def baselines(n_clips: int, geometry: Geometry = Geometry(), known: int = KNOWN_FRAMES) -> list[dict]:
    """The trivial generators' results on the same clips: truth, then each task's baselines."""
    from vdrt.export.tiny.quality.baselines import Baseline

    out = [evaluate(Baseline("truth", n_clips, geometry), n_clips, 0, geometry, known, name="truth")]
    for kind in EXTEND_BASELINES:
        out.append(evaluate(Baseline(kind, n_clips, geometry), n_clips, 0, geometry, known, ("extend",), kind))
    for kind in INTERPOLATE_BASELINES:
        out.append(evaluate(Baseline(kind, n_clips, geometry), n_clips, 0, geometry, known, ("interpolate",),
                            f"{kind} (interpolate)"))
    return out


# ---------------------------------------------------------------- printing and JSON

TABLE = (("t2v.adherent", "adherent", "{:.3f}"), ("t2v.colour", "colour", "{:.3f}"), ("t2v.shape", "shape", "{:.3f}"),
         ("t2v.size", "size", "{:.3f}"), ("t2v.motion", "motion", "{:.3f}"), ("t2v.count_ok", "count", "{:.3f}"),
         ("t2v.coherent", "coherent", "{:.3f}"), ("t2v.jumps", "jumps", "{:.2f}"),
         ("extend.psnr", "ext PSNR", "{:.2f}"), ("extend.ssim", "ext SSIM", "{:.3f}"),
         ("extend.centroid_error", "ext px", "{:.2f}"), ("extend.iou", "ext IoU", "{:.3f}"),
         ("interpolate.psnr", "int PSNR", "{:.2f}"), ("interpolate.centroid_error", "int px", "{:.2f}"))


def table(results: list[dict]) -> str:
    """A markdown table: one row per result, the headline metrics as columns ('-' where not run)."""
    head = "| generator | " + " | ".join(h for _, h, _ in TABLE) + " |"
    lines = [head, "|" + " --- |" * (len(TABLE) + 1)]
    for r in results:
        cells = [fmt.format(r["summary"][k]) if r["summary"].get(k) is not None else "-" for k, _, fmt in TABLE]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def row(result: dict) -> dict:
    """A JSON-safe row of a result (no clips; inf as the string 'inf')."""
    def safe(v):
        return "inf" if isinstance(v, float) and np.isinf(v) else v

    keep = {k: v for k, v in result.items() if k not in ("outputs", "per_clip")}
    keep["summary"] = {k: safe(v) for k, v in result["summary"].items()}
    return keep
