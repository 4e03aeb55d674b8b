"""`vdrt calibrate MODEL`: fit the step-cache policies (TeaCache's polynomial, MagCache's ratios) for a model.

    vdrt calibrate vdrt-tiny-teacher                        # 3 prompts x 2 seeds at the model's defaults
    vdrt calibrate wan2.1-t2v-1.3b --steps 50 --frames 33 --height 240 --width 416 --device cuda
    vdrt generate "a red circle bouncing" --model vdrt-tiny-teacher --cache teacache:0.2

Generates without caching, records each step's signals and fits them (vdrt/bench/calibrate.py). The
result is kept in a user-writable overlay ($VDRT_CALIBRATION_DIR, else the vdrt cache folder's
calibration/), keyed by the model's weights; `--out FILE` also writes the "cache_calibration" dict
there (e.g. to put into an engine manifest). The installed package is never edited.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vdrt.errors import ConfigError


def add_parser(sub):
    p = sub.add_parser("calibrate", help="fit the step-cache policies' coefficients for a model", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="embedded model, preset, checkpoint or diffusers directory (not an engine)")
    p.add_argument("--prompts", default=None, help="prompts separated by ';' (default: 3 built-in ones)")
    p.add_argument("--seeds", default="0,1", help="comma list of seeds (default 0,1)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's; at least 3)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    for flag in ("--frames", "--height", "--width"):
        p.add_argument(flag, type=int, default=None, help="pixels / frames (default: the model's)")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default=None, help="fp32 | bf16 | fp16")
    p.add_argument("--out", default=None, help="also write the cache_calibration dict to this JSON file")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    import vdrt
    from vdrt.bench.calibrate import PROMPTS, CalibrationRun, calibrate, calibration_request
    from vdrt.cli.runconfig import parse_precision
    from vdrt.pipeline.sources import describe

    run = CalibrationRun(prompts=_prompts(args.prompts) or PROMPTS, seeds=_seeds(args.seeds), num_steps=args.steps,
                         guidance=args.guidance, size=(args.frames, args.height, args.width))
    req = calibration_request(describe(args.model), run)  # sizes and steps checked before loading
    pipe = vdrt.Pipeline.from_pretrained(args.model, dtype=parse_precision(args.precision), device=args.device)
    cal, path = calibrate(pipe, args.model, run, req)
    if args.out:
        from vdrt.fsutil import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps({"cache_calibration": cal}, indent=1) + "\n")
    t, m = cal["teacache"], cal["magcache"]
    print(f"calibrated {args.model}: teacache poly {['%.4g' % c for c in t['coefficients']]} (r2 {t['r2']:.3f}, "
          f"{t['points']} points); magcache ratios {min(m['ratios']):.3f}..{max(m['ratios']):.3f} over "
          f"{m['num_steps']} steps\nkept in {path}")
    return 0


def _prompts(text) -> tuple:
    if text is None:
        return ()
    prompts = tuple(p.strip() for p in text.split(";") if p.strip())
    if not prompts:
        raise ConfigError("--prompts is empty; give prompts separated by ';'")
    return prompts


def _seeds(text) -> tuple:
    try:
        seeds = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a comma list of whole numbers, e.g. 0,1") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: give at least one seed >= 0")
    return seeds
