"""`vdrt bench`: time the denoiser step of a model (and, with --quality, the quality oracle)."""
from __future__ import annotations

import argparse

from vdrt.errors import VdrtError


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmark a model or engine", description=__doc__)
    p.add_argument("model", nargs="?", default=None, help="model card name (default vdrt-tiny), preset, checkpoint or engine directory")
    p.add_argument("--quality", action="store_true", help="run the ground-truth quality metrics (vdrt-tiny)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", "--json", dest="out", default=None, help="write JSON rows here")
    p.add_argument("--weights-dir", default=None, help="folder holding the model card <model>.json + weights "
                   "(default: the embedded weight folders)")
    q = p.add_argument_group("quality (--quality)")
    q.add_argument("--clips", type=int, default=64, help="held-out test clips to score")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--num-steps", type=int, default=None, help="sampling steps (default: the card's)")
    q.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the card's)")
    q.add_argument("--random", action="store_true", help="score the card's architecture with random weights")
    t = p.add_argument_group("timing (without --quality)")
    t.add_argument("--batch", type=int, default=None, help="batch size (timing: 1; quality: clips per call, 64)")
    t.add_argument("--repeats", type=int, default=10, help="timed calls (the median is reported)")
    t.add_argument("--frames", type=int, default=None, help="pixel frames (default: the model's)")
    t.add_argument("--height", type=int, default=None, help="pixels")
    t.add_argument("--width", type=int, default=None, help="pixels")
    t.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on CPU)")
    t.add_argument("--dtype", default=None, help=argparse.SUPPRESS)  # older spelling: float32 | bfloat16 | float16
    t.add_argument("--backend", default=None,
                   help="torch | aoti | onnx: build the model into that engine first (default: torch, or the "
                        "engine directory's own backend)")
    t.add_argument("--steps", type=int, default=0, help="also time one end-to-end clip of N sampler steps")
    t.add_argument("--peers", default=None, help="comma list of peers timed in the same process: diffusers,compile")
    p.set_defaults(func=run_bench)


def run_bench(args) -> int:
    try:
        from vdrt import bench
    except ImportError as e:
        raise VdrtError("`vdrt bench` is not built yet in this version of vdrt") from e
    return bench.command(args)
