"""`vdrt build MODEL --backend aoti|onnx|tensorrt ...`: compile a denoiser into an engine directory."""
from __future__ import annotations

from vdrt.errors import VdrtError


def add_parser(sub):
    p = sub.add_parser("build", help="compile a denoiser into an engine directory", description=__doc__)
    p.add_argument("model", help="preset or diffusers / vdrt checkpoint directory")
    p.add_argument("--backend", choices=["aoti", "onnx", "tensorrt"], default="aoti")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "fp8", "int8"], default="bf16")
    p.add_argument("--frames", default=None, help="MIN:OPT:MAX pixel frames")
    p.add_argument("--height", default=None, help="MIN:OPT:MAX pixels")
    p.add_argument("--width", default=None, help="MIN:OPT:MAX pixels")
    p.add_argument("--batch", default=None, help="MIN:OPT:MAX batch (2 for CFG)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True, help="engine directory to write")
    p.set_defaults(func=run_build)


def run_build(args) -> int:
    try:
        from vdrt.export import cli as export_cli
    except ImportError as e:
        raise VdrtError("engine building is not built yet in this version of vdrt (issue: compiled engines)") from e
    return export_cli.build_command(args)
