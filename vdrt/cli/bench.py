"""`vdrt bench`: time the denoiser step of a model (and, with --quality, the quality oracle)."""
from __future__ import annotations

from vdrt.errors import VdrtError


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmark a model or engine", description=__doc__)
    p.add_argument("model", nargs="?", default=None, help="preset, checkpoint or engine directory")
    p.add_argument("--quality", action="store_true", help="run the ground-truth quality metrics (vdrt-tiny)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write JSON rows here")
    p.set_defaults(func=run_bench)


def run_bench(args) -> int:
    try:
        from vdrt import bench
    except ImportError as e:
        raise VdrtError("`vdrt bench` is not built yet in this version of vdrt") from e
    return bench.command(args)
