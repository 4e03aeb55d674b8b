"""`vdrt generate PROMPT -o out.mp4`: the main job, on the embedded default model unless --model says."""
from __future__ import annotations

import logging
from pathlib import Path

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

# (flag, type, help); dest is the flag without dashes, with '-' -> '_'
GEN_FLAGS = [
    ("--frames", int, "number of frames"),
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
    ("--dtype", str, "float32 | bfloat16 | float16"),
    ("--attention", str, "attention implementation: auto | sdpa (= torch) | vdrt | vdrt-int8"),
    ("--gpus", int, "processes, one per GPU: CFG parallel x Ulysses sequence parallel (with --device cpu: gloo)"),
]


def add_parser(sub, name: str = "generate", model_help: str | None = None):
    p = sub.add_parser(name, help="generate a video from a prompt" if name == "generate" else
                       "generate a video with an engine directory", description=__doc__)
    if name == "run":
        p.add_argument("model", help="engine directory (from `vdrt build`)")
    p.add_argument("prompt", nargs="?", default=None, help="the text prompt")
    p.add_argument("-o", "--out", default=None, help="output: .mp4, .gif, .webp, or a folder for .png frames")
    if name == "generate":
        p.add_argument("--model", default=None, help=model_help or "preset, embedded model, diffusers dir or engine "
                       "dir (default: the embedded vdrt-tiny)")
    for flag, typ, hlp in GEN_FLAGS:
        p.add_argument(flag, type=typ, default=None, help=hlp)
    p.add_argument("--config", default=None, help="TOML run config; command-line flags override it")
    p.add_argument("--cuda-graphs", action="store_true", default=None, help="replay the denoiser through CUDA graphs")
    p.add_argument("--trust-pickle", action="store_true", default=None, help="allow .bin/.pt checkpoints")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    p.set_defaults(func=run_generate)
    return p


def run_generate(args) -> int:
    from vdrt.cli.runconfig import merge_toml

    opts = merge_toml(vars(args), args.config)
    if not opts.get("prompt") and not opts.get("prompt_embeds"):
        raise ConfigError("a prompt is needed: vdrt generate \"a red circle bouncing\" -o clip.mp4")
    from vdrt.parallel.launch import run_parallel, wants_parallel

    if wants_parallel(opts):
        return run_parallel(opts)
    out = Path(opts.get("out") or "out.mp4")
    pipe = _pipeline(opts)
    video = _generate(pipe, opts)
    video.save(out)
    print(f"wrote {out} ({video.frames.shape[0]} frames, {video.frames.shape[2]}x{video.frames.shape[1]}, "
          f"model {pipe.name})")
    return 0


def default_model() -> str:
    from vdrt import embedded

    return "vdrt-tiny" if "vdrt-tiny" in embedded.names() else "factorized-tiny"


def _pipeline(opts):
    import vdrt
    from vdrt.cli.runconfig import parse_dtype

    model = opts.get("model") or default_model()
    if opts.get("command") == "run" and not (Path(model) / "manifest.json").is_file():
        from vdrt.errors import EngineError

        raise EngineError(f"{model} is not an engine directory (no manifest.json); build one with `vdrt build`")
    if model == "factorized-tiny" and not opts.get("model"):
        log.warning("no embedded trained model in this install: using factorized-tiny with RANDOM weights")
    if opts.get("attention"):
        vdrt.ops.set_choice("attention", opts["attention"])
    return vdrt.Pipeline.from_pretrained(model, dtype=parse_dtype(opts.get("dtype")), device=opts.get("device"),
                                         cuda_graphs=bool(opts.get("cuda_graphs")),
                                         trust_pickle=bool(opts.get("trust_pickle")))


def _generate(pipe, opts):
    from vdrt.cli.runconfig import read_embeds

    embeds = read_embeds(opts["prompt_embeds"]) if opts.get("prompt_embeds") else {}
    kw = dict(num_frames=opts.get("frames"), height=opts.get("height"), width=opts.get("width"),
              num_steps=opts.get("steps"), guidance=opts.get("guidance"), seed=opts.get("seed") or 0,
              sampler=opts.get("sampler"), shift=opts.get("shift"), mode=opts.get("mode") or "t2v",
              image=opts.get("image"), video=opts.get("video"), mask=opts.get("mask"),
              known_frames=opts.get("known_frames"), negative_prompt=opts.get("negative_prompt") or "",
              fps=opts.get("fps"), progress=not opts.get("no_progress"), **embeds)
    if opts.get("strength") is not None:
        kw["strength"] = opts["strength"]
    return pipe(opts.get("prompt") or "", **kw)
