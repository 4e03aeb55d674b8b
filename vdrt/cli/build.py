"""`vdrt build MODEL --backend aoti|onnx|tensorrt ...`: compile a denoiser into an engine directory.

Sizes are pixels, as MIN:OPT:MAX (or one number for a fixed size); they are converted to the
model's latent units (Wan: (F-1)/4+1 frames, /8 spatially; pixel-space models 1:1). Builds are
cached by content ($VDRT_CACHE, default ~/.cache/vdrt/engines), so a repeated build is a copy.

`--lora PATH[:SCALE]` (repeatable) fuses LoRAs into the weights before the export: the engine runs them
at zero cost, and its manifest records each one's file, sha256 and scale (`vdrt run ENGINE --lora`
accepts only those). `--recipe NAME` records the few-step recipe `vdrt run` uses (default: the one the
model's card or config names). `--attention NAME [--sparse D|FxHxW]` compiles that attention into the
engine (every step runs it; a sparse plan is fixed by the grid, so sparse engines take one size).
"""
from __future__ import annotations

from vdrt.errors import VdrtError


def add_parser(sub):
    p = sub.add_parser("build", help="compile a denoiser into an engine directory", description=__doc__)
    p.add_argument("model", help="preset or diffusers / vdrt checkpoint directory")
    p.add_argument("--backend", choices=["aoti", "onnx", "tensorrt"], default="aoti")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "fp8", "int8"], default="bf16")
    p.add_argument("--frames", default=None, help="MIN:OPT:MAX pixel frames (default: the model's usual size)")
    p.add_argument("--height", default=None, help="MIN:OPT:MAX pixels")
    p.add_argument("--width", default=None, help="MIN:OPT:MAX pixels")
    p.add_argument("--batch", default=None, help="MIN:OPT:MAX batch (default 1:2:2: CFG batches two)")
    p.add_argument("--text-len", default=None, help="MIN:OPT:MAX text tokens (default 1:L:L, L = the model's)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--no-cache", action="store_true", help="build even if the build cache has this engine")
    p.add_argument("--out", required=True, help="engine directory to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace the engine directory at --out")
    p.add_argument("--lora", action="append", default=None, metavar="PATH[:SCALE]",
                   help="a LoRA fused into the weights before the build (repeatable); recorded in the manifest")
    p.add_argument("--recipe", default=None, help="few-step recipe recorded for `vdrt run` (wan-4step-distill | "
                   "fastwan-3step | none; default: the one the model names)")
    p.add_argument("--trust-pickle", action="store_true", help="allow .bin/.pt checkpoints and LoRAs")
    p.add_argument("--attention", default=None, help="attention compiled into the engine: auto | sdpa | vdrt | "
                   "vdrt-int8 | vdrt-sparse | vdrt-sparse-int8 (recorded in the manifest)")
    p.add_argument("--sparse", default=None, help="with a sparse --attention: a density (0.25) or a window of "
                   "tiles FxHxW; sparse engines are built for one size (give --frames/--height/--width as one number)")
    p.set_defaults(func=run_build)


def run_build(args) -> int:
    try:
        from vdrt.export import cli as export_cli
    except ImportError as e:
        raise VdrtError(f"the engine builder (vdrt.export) cannot be imported: {e}") from e
    return export_cli.build_command(args)
