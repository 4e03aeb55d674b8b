"""`vdrt generate PROMPT -o out.mp4`: the main job, on the embedded default model unless --model says.

Flags (and a TOML --config) -> one GenerateRequest, checked against the model's sizes and
defaults (read from its card or config, no weights) -> the Pipeline -> the writer.
"""
from __future__ import annotations

from vdrt.cli.options import GEN_FLAGS, REPEATED_FLAGS, SWITCHES
from vdrt.errors import ConfigError

RUN_DOC = """`vdrt run ENGINE_DIR PROMPT -o out.mp4`: generate with a built engine directory (from `vdrt build`).

Takes the same flags as `vdrt generate`; the model is the engine directory.
"""


def add_parser(sub, name: str = "generate"):
    run = name == "run"
    p = sub.add_parser(name, description=RUN_DOC if run else __doc__,
                       help="generate a video with an engine directory" if run else "generate a video from a prompt")
    if run:
        p.add_argument("model", help="engine directory (from `vdrt build`)")
    p.add_argument("prompt", nargs="?", default=None, help="the text prompt")
    p.add_argument("-o", "--out", default=None, help="output: .mp4, .gif, .webp, or a folder (trailing /) for .png "
                   "frames (default out.mp4)")
    if not run:
        p.add_argument("--model", default=None, help="preset, embedded model, diffusers dir or engine dir (default: "
                       "the embedded vdrt-tiny)")
    for flag, typ, hlp in GEN_FLAGS:
        p.add_argument(flag, type=typ, default=None, help=hlp)
    for flag, metavar, hlp in REPEATED_FLAGS:
        p.add_argument(flag, action="append", default=None, metavar=metavar, help=hlp)
    p.add_argument("--dtype", default=None, help=argparse_suppress())  # older spelling of --precision
    p.add_argument("--config", default=None, help="TOML run config; command-line flags override it")
    for flag, hlp in SWITCHES:
        p.add_argument(flag, action="store_true", default=None, help=hlp)
    p.set_defaults(func=run_generate)
    return p


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def run_generate(args) -> int:
    from vdrt.cli.runconfig import merge_toml

    opts = merge_toml(vars(args), args.config)
    if not opts.get("prompt") and not opts.get("prompt_embeds"):
        raise ConfigError("a prompt is needed: vdrt generate \"a red circle bouncing\" -o clip.mp4")
    from vdrt.cli import parallel
    from vdrt.cli.options import build_pipeline, checked_request

    if parallel.wants_parallel(opts):
        return parallel.run(opts)
    req = checked_request(opts)
    pipe = build_pipeline(opts)
    video = pipe(req, progress=not opts.get("no_progress"))
    video.save(req.out)
    print(f"wrote {req.out} ({video.frames.shape[0]} frames, {video.frames.shape[2]}x{video.frames.shape[1]}, "
          f"model {pipe.name})")
    return 0
