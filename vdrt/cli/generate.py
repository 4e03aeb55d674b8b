"""`vdrt generate PROMPT -o out.mp4`: the main job, on the embedded default model unless --model says.

Flags (and a TOML --config) -> one GenerateRequest, checked against the model's sizes and
defaults (read from its card or config, no weights) -> the Pipeline -> the writer.
"""
from __future__ import annotations

import logging
from pathlib import Path

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

RUN_DOC = """`vdrt run ENGINE_DIR PROMPT -o out.mp4`: generate with a built engine directory (from `vdrt build`).

Takes the same flags as `vdrt generate`; the model is the engine directory.
"""

# (flag, type, help); dest is the flag without dashes, with '-' -> '_'
GEN_FLAGS = [
    ("--frames", int, "number of frames (default: the model's)"),
    ("--height", int, "height in pixels"),
    ("--width", int, "width in pixels"),
    ("--steps", int, "sampling steps"),
    ("--guidance", float, "classifier-free guidance scale (1 = off)"),
    ("--seed", int, "random seed (default 0)"),
    ("--sampler", str, "euler | unipc | dpm++2m | fewstep"),
    ("--shift", float, "flow-matching timestep shift"),
    ("--mode", str, "t2v | i2v | extend | interpolate | inpaint | outpaint | v2v"),
    ("--image", str, "image for i2v (first frame)"),
    ("--video", str, "video for extend / interpolate / inpaint / outpaint / v2v"),
    ("--mask", str, "mask image for inpaint/outpaint (white = generate)"),
    ("--strength", float, "v2v strength in (0, 1]"),
    ("--known-frames", int, "extend: how many leading frames of --video are kept"),
    ("--negative-prompt", str, "negative prompt for guidance"),
    ("--prompt-embeds", str, "safetensors file with 'prompt_embeds' (and optionally 'negative_prompt_embeds')"),
    ("--fps", int, "frames per second of the written video"),
    ("--device", str, "cpu | cuda | cuda:N (default: cuda if available)"),
    ("--precision", str, "fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on the CPU)"),
    ("--attention", str, "attention implementation: auto | sdpa (= torch) | vdrt | vdrt-int8"),
    ("--gpus", int, "processes, one per GPU: CFG parallel x Ulysses sequence parallel (with --device cpu: gloo)"),
]
SWITCHES = [("--cuda-graphs", "replay the denoiser through CUDA graphs"),
            ("--trust-pickle", "allow .bin/.pt checkpoints"),
            ("--no-progress", "no progress bar"),
            ("--force", "replace an existing output")]


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

    if parallel.wants_parallel(opts):
        return parallel.run(opts)
    req = checked_request(opts)
    pipe = build_pipeline(opts)
    video = pipe(req, progress=not opts.get("no_progress"))
    video.save(req.out)
    print(f"wrote {req.out} ({video.frames.shape[0]} frames, {video.frames.shape[2]}x{video.frames.shape[1]}, "
          f"model {pipe.name})")
    return 0


def model_of(opts: dict) -> str:
    return opts.get("model") or default_model()


def default_model() -> str:
    from vdrt import embedded

    return "vdrt-tiny" if "vdrt-tiny" in embedded.names() else "factorized-tiny"


def request(opts: dict):
    """The GenerateRequest the options describe (checked on construction: types, ranges, media, output path)."""
    from vdrt.cli.runconfig import read_embeds
    from vdrt.request import GenerateRequest

    embeds = read_embeds(opts["prompt_embeds"]) if opts.get("prompt_embeds") else {}
    keys = dict(num_frames="frames", height="height", width="width", num_steps="steps", guidance="guidance",
                sampler="sampler", shift="shift", image="image", video="video", mask="mask", strength="strength",
                known_frames="known_frames", fps="fps", seed="seed", mode="mode", negative_prompt="negative_prompt")
    given = {k: opts.get(v) for k, v in keys.items() if opts.get(v) is not None}
    return GenerateRequest(prompt=opts.get("prompt") or "", **given, **embeds, out=str(opts.get("out") or "out.mp4"),
                           force=bool(opts.get("force")))


def checked_request(opts: dict):
    """The request, resolved against the model's defaults and sizes, before any weight is loaded."""
    from vdrt.pipeline.sources import describe

    req = request(opts)
    model = model_of(opts)
    if opts.get("command") == "run" and not (Path(model) / "manifest.json").is_file():
        from vdrt.errors import EngineError

        raise EngineError(f"{model} is not an engine directory (no manifest.json); build one with `vdrt build`")
    info = describe(model)
    return req.resolved(info.defaults, info.geometry, info.name)


def build_pipeline(opts: dict):
    import vdrt
    from vdrt.cli.runconfig import parse_precision

    model = model_of(opts)
    if model == "factorized-tiny" and not opts.get("model"):
        log.warning("no embedded trained model in this install: using factorized-tiny with RANDOM weights")
    dtype = parse_precision(opts.get("precision")) or parse_precision(opts.get("dtype"), "--dtype")
    if opts.get("attention"):
        vdrt.ops.set_choice("attention", opts["attention"])
    return vdrt.Pipeline.from_pretrained(model, dtype=dtype, device=opts.get("device"),
                                         cuda_graphs=bool(opts.get("cuda_graphs")),
                                         trust_pickle=bool(opts.get("trust_pickle")))
