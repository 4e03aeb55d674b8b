"""`vdrt calibrate MODEL`: fit the step-cache policies' coefficients for a model, and find them again later.

A few prompts x seeds are generated without caching, through `vdrt.Pipeline` with a `Recorder`
step hook (it never skips); `vdrt.samplers.policies.calibration.fit` turns the records into the
model's "cache_calibration" dict (TeaCache's polynomial, MagCache's magnitude ratios), kept in the
user-writable overlay under a key naming the model's weights (`model_key`):

- an embedded model (a card): its name and the card's weights sha256 (retrained weights: a new key);
- a checkpoint or diffusers directory: its resolved path, config, and its weight files' sizes and mtimes;
- a preset (random weights): its name.

Engine directories are compiled: step caching needs the eager model, so they are not calibrated
(`vdrt calibrate MODEL --out FILE` writes {"cache_calibration": ...}, the form a manifest may carry).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROMPTS = ("a red circle bouncing", "a blue square moving left", "a green triangle falling")  # the tiny vocabulary
SEEDS = (0, 1)


def identity(info) -> str:
    """What names a model's weights (a `vdrt.pipeline.sources.ModelInfo`), for the overlay key."""
    if info.card is not None:
        return f"card:{info.card.sha256}"
    if info.kind == "preset":
        return f"preset:{info.name}"
    root = Path(info.name).resolve()
    files = sorted((str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime))
                   for p in root.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    return f"dir:{root}:{json.dumps(info.config.to_dict(), sort_keys=True)}:{files}"


def model_key(source) -> str:
    from vdrt.pipeline.sources import describe
    from vdrt.samplers.policies.calibration import key

    return key(describe(source).name, identity(describe(source)))


def calibration_for(source) -> dict | None:
    """The kept calibration of `source` (None: never calibrated, or an engine: compiled engines cannot skip blocks)."""
    from vdrt.pipeline.sources import describe
    from vdrt.samplers.policies.calibration import key, load

    info = describe(source)
    return None if info.kind == "engine" else load(key(info.name, identity(info)))


@dataclass(frozen=True)
class CalibrationRun:
    """What `vdrt calibrate` generates: prompts x seeds, steps and guidance (None: the model's), a size."""

    prompts: tuple = PROMPTS
    seeds: tuple = SEEDS
    num_steps: int | None = None
    guidance: float | None = None
    size: tuple = (None, None, None)  # frames, height, width (None: the model's)


def calibrate(pipe, source, run: CalibrationRun, req=None) -> tuple[dict, Path]:
    """Generate `run` on `pipe` (no caching), fit, and keep the result for `source`; returns (dict, its path).

    `req`: the request `calibration_request` checked before the model was loaded (else made here)."""
    from vdrt.samplers.policies.calibration import Recorder, fit, save

    rec, records = Recorder(0.0), []
    pipe.hooks = [h for h in pipe.hooks if not hasattr(h, "stats")] + [rec]
    req = req or calibration_request(pipe.info, run)
    for prompt in run.prompts:
        for seed in run.seeds:
            pipe(req.replace(prompt=prompt, seed=seed), progress=False)
            records.append(rec.records)
            log.info("calibrate: %r seed %d: %d records", prompt, seed, len(rec.records))
    pipe.hooks.remove(rec)
    meta = {"prompts": list(run.prompts), "seeds": list(run.seeds), "num_steps": req.num_steps,
            "guidance": req.guidance, "size": [req.num_frames, req.height, req.width], **_stamp(pipe)}
    cal = fit(records, req.num_steps, meta)
    return cal, save(model_key(source), cal)


def calibration_request(info, run: CalibrationRun):
    """The request each calibration generation refines (prompt, seed), resolved against the model's sizes and
    defaults from its `ModelInfo` (no weights): bad sizes are refused before anything loads."""
    from vdrt.errors import ConfigError
    from vdrt.request import GenerateRequest

    if info.kind == "engine":
        raise ConfigError(f"{info.name} is a compiled engine; step caching (and its calibration) needs the eager "
                          "model it was built from: vdrt calibrate MODEL")

    f, h, w = run.size
    given = dict(num_steps=run.num_steps, guidance=run.guidance, num_frames=f, height=h, width=w)
    req = GenerateRequest(prompt=run.prompts[0], output_type="latent", **{k: v for k, v in given.items()
                                                                          if v is not None})
    req = req.resolved(info.defaults, info.geometry, info.name)
    if req.num_steps < 3:
        raise ConfigError(f"{req.num_steps} steps: calibration needs at least 3 (2 step-to-step changes); pass --steps")
    return req


def _stamp(pipe) -> dict:
    from vdrt.bench.meta import run_meta

    m = run_meta(pipe.device)
    return {k: m[k] for k in ("device", "commit", "date", "torch")}
