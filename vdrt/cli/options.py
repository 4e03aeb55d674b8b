"""The options of `vdrt generate` / `vdrt run`: their flags, and options -> a checked GenerateRequest and a Pipeline."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

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
    ("--recipe", str, "few-step recipe of a step-distilled model: wan-4step-distill | fastwan-3step | none (default: "
                      "the one the model's card or config names); sets the sampler, steps, shift and guidance"),
    ("--mode", str, "t2v | i2v | extend | interpolate | inpaint | outpaint | v2v | continue | slowmo | upscale | "
                    "remove | grow"),
    ("--image", str, "image for i2v (first frame)"),
    ("--video", str, "input video of every mode but t2v / i2v (continue: the previous chunk; upscale: the low-res "
                     "clip; grow: a clip smaller than --width x --height)"),
    ("--mask", str, "mask image for inpaint/outpaint (white = generate); remove/inpaint: a video of per-frame masks"),
    ("--strength", float, "v2v strength in (0, 1]"),
    ("--known-frames", int, "extend: how many leading frames of --video are kept (continue: how many of its last)"),
    ("--negative-prompt", str, "negative prompt for guidance"),
    ("--prompt-embeds", str, "safetensors file with 'prompt_embeds' (and optionally 'negative_prompt_embeds')"),
    ("--fps", int, "frames per second of the written video"),
    ("--device", str, "cpu | cuda | cuda:N (default: cuda if available)"),
    ("--precision", str, "fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on the CPU)"),
    ("--attention", str, "attention implementation: auto | sdpa (= torch) | vdrt | vdrt-int8 | vdrt-sparse | "
                         "vdrt-sparse-int8 (lossy ones run from the step --dense-steps says)"),
    ("--sparse", str, "sparse attention: a density in (0, 1] (e.g. 0.25) or a window of tiles FxHxW (e.g. 2x7x5)"),
    ("--dense-steps", int, "first steps with dense attention before a lossy --attention (default: 30%% of the steps "
                           "for sparse, 0 for 8-bit)"),
    ("--cache", str, "step caching: teacache:T | magcache:T | fbcache:T, T in [0, 1] (0 never skips; calibrate the "
                     "model first: vdrt calibrate MODEL)"),
    ("--gpus", int, "processes, one per GPU: CFG parallel x Ulysses sequence parallel (with --device cpu: gloo)"),
]
SWITCHES = [("--cuda-graphs", "replay the denoiser through CUDA graphs"),
            ("--trust-pickle", "allow .bin/.pt checkpoints"),
            ("--no-progress", "no progress bar"),
            ("--force", "replace an existing output")]
# repeatable flags (a list of values; dest as above): LoRAs, fused into the denoiser before anything runs
REPEATED_FLAGS = [("--lora", "PATH[:SCALE]", "a LoRA (.safetensors) fused into the denoiser at SCALE (default 1); "
                   "repeat for several. With `vdrt run`: the engine must have been built with them")]


def model_of(opts: dict) -> str:
    return opts.get("model") or default_model()


def default_model() -> str:
    from vdrt import embedded

    return "vdrt-tiny" if "vdrt-tiny" in embedded.names() else "factorized-tiny"


def request(opts: dict):
    """The GenerateRequest the options describe (checked on construction: types, ranges, media, output path)."""
    from vdrt.cli.runconfig import read_embeds
    from vdrt.request import GenerateRequest

    cache_spec(opts)  # --cache is checked here too (the parallel parent checks only the request)
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

    attention_schedule(opts)  # the attention and LoRA flags are checked here too, before anything loads
    _refuse_attention_flags_on_engines(opts)
    lora_specs(opts)
    req = request(opts)
    model = model_of(opts)
    if opts.get("command") == "run" and not (Path(model) / "manifest.json").is_file():
        from vdrt.errors import EngineError

        raise EngineError(f"{model} is not an engine directory (no manifest.json); build one with `vdrt build`")
    info = describe(model)
    req = with_recipe(req, opts, info)
    check_memory(req, opts, info)
    return req


def check_memory(req, opts: dict, info) -> None:
    """The device, precision, the model's size limits and the memory estimate, before any weight loads
    (vdrt.pipeline.memory); --gpus runs are checked in each child, on its own device."""
    from vdrt.cli.runconfig import parse_precision
    from vdrt.pipeline import memory
    from vdrt.pipeline.sources import device_and_dtype

    dtype = parse_precision(opts.get("precision")) or parse_precision(opts.get("dtype"), "--dtype")
    device, dtype = device_and_dtype(opts.get("device"), dtype)
    if opts.get("cuda_graphs") and device.type != "cuda":
        from vdrt.errors import ConfigError

        raise ConfigError(f"--cuda-graphs needs a CUDA device; this run is on {device}: drop --cuda-graphs")
    if opts.get("gpus") and opts["gpus"] > 1:
        return
    from vdrt import ops

    attention = ops.ALIASES.get(opts.get("attention"), opts.get("attention")) or ops.get_choice("attention")
    memory.check(req, memory.plan_before_load(info, device, dtype, attention))


def lora_specs(opts: dict) -> list:
    """--lora PATH[:SCALE] (repeatable; TOML `lora = [...]`) -> checked [(path, scale)]."""
    from vdrt.pipeline.adapters import lora_specs as specs

    return specs(opts.get("lora"), bool(opts.get("trust_pickle")))


def with_recipe(req, opts: dict, info):
    """The request resolved against the model's defaults under --recipe (or the model's own recipe); a recipe
    that does not fit the model, or flags that contradict it, are refused."""
    from vdrt.pipeline.conditioning import fit_request
    from vdrt.pipeline.recipe import check_request, choose, defaults_with

    recipe = choose(opts.get("recipe"), info)
    check_request(recipe, req, info)
    req = fit_request(req, info.config, info.name)  # sizes from the input (slowmo, upscale); the mode fits the model
    return req.resolved(defaults_with(info.defaults, recipe), info.geometry, info.name)


def build_pipeline(opts: dict):
    import vdrt
    from vdrt.cli.runconfig import parse_precision

    model = model_of(opts)
    if model == "factorized-tiny" and not opts.get("model"):
        log.warning("no embedded trained model in this install: using factorized-tiny with RANDOM weights")
    dtype = parse_precision(opts.get("precision")) or parse_precision(opts.get("dtype"), "--dtype")
    schedule = attention_schedule(opts)
    cache = cache_policy(opts, model)  # before loading: a missing calibration warns first
    if opts.get("attention") and schedule is None:
        vdrt.ops.set_choice("attention", opts["attention"])
    pipe = vdrt.Pipeline.from_pretrained(model, dtype=dtype, device=opts.get("device"),
                                         cuda_graphs=bool(opts.get("cuda_graphs")),
                                         trust_pickle=bool(opts.get("trust_pickle")),
                                         lora=lora_specs(opts), recipe=opts.get("recipe"))
    if schedule is not None:
        pipe.hooks.append(schedule)
    if cache is not None:
        pipe.hooks.append(cache)
    return pipe


def cache_spec(opts: dict):
    """--cache parsed (vdrt.samplers.policies.cachespec) and checked against the other flags and the model's kind
    (an engine directory has no block stack to skip); None without it."""
    from vdrt.errors import ConfigError
    from vdrt.samplers.policies.cachespec import parse

    spec = parse(opts.get("cache"))
    if spec is not None and opts.get("cuda_graphs"):
        raise ConfigError("--cache decides per step in Python, which a CUDA-graph replay cannot: drop --cuda-graphs "
                          "or --cache")
    if spec is not None and (opts.get("gpus") or 1) > 1:
        raise ConfigError("--cache runs in one process (the ranks would decide apart): drop --gpus or --cache")
    if spec is not None and (Path(model_of(opts)) / "manifest.json").is_file():
        raise ConfigError(f"--cache needs the eager model (its block stack); {model_of(opts)} is a compiled engine: "
                          "use `vdrt generate --model MODEL --cache ...` with the model it was built from")
    return spec


def cache_policy(opts: dict, model: str):
    """The step-cache policy of --cache with the model's calibration (vdrt calibrate), or None."""
    spec = cache_spec(opts)
    if spec is None:
        return None
    from vdrt.bench.calibrate import calibration_for

    return spec.build(calibration_for(model))


LOSSY_ATTENTION = ("vdrt-int8", "vdrt-sparse", "vdrt-sparse-int8")


def _refuse_attention_flags_on_engines(opts: dict) -> None:
    """A compiled engine runs the attention it was built with: the attention flags cannot change it."""
    model = model_of(opts)
    given = [f"--{k.replace('_', '-')}" for k in ("attention", "sparse", "dense_steps") if opts.get(k) is not None]
    if given and (Path(model) / "manifest.json").is_file():
        from vdrt.errors import ConfigError

        raise ConfigError(f"{' '.join(given)}: {model} is a compiled engine and runs the attention it was built with "
                          "(vdrt inspect shows it); rebuild with `vdrt build ... --attention NAME [--sparse ...]`")


def attention_schedule(opts: dict):
    """The per-step attention schedule of a lossy --attention (None for the lossless choices); checked
    before anything is loaded: --sparse and --dense-steps without a lossy --attention are refused."""
    from vdrt import ops
    from vdrt.samplers.policies.attention import AttentionSchedule

    name = ops.ALIASES.get(opts.get("attention"), opts.get("attention"))
    if name is not None and name not in ops.available("attention"):
        from vdrt.errors import ConfigError

        raise ConfigError(f"--attention {name}: unknown implementation; choose one of {ops.available('attention')}")
    sparse = parse_sparse(opts.get("sparse"))
    if name not in LOSSY_ATTENTION:
        if sparse is not None or opts.get("dense_steps") is not None:
            from vdrt.errors import ConfigError

            raise ConfigError("--sparse and --dense-steps go with a lossy --attention (vdrt-int8, vdrt-sparse, "
                              "vdrt-sparse-int8)")
        return None
    if sparse is not None and name not in ops.SPARSE_IMPLS:
        from vdrt.errors import ConfigError

        raise ConfigError(f"--sparse goes with --attention vdrt-sparse or vdrt-sparse-int8, not {name}")
    return AttentionSchedule(name, dense_first=opts.get("dense_steps"), sparse=sparse)


def parse_sparse(text):
    """`--sparse 0.25` (density) or `--sparse 2x7x5` (window in tiles) -> SparseConfig (None if unset)."""
    from vdrt.errors import ConfigError
    from vdrt.sparse import SparseConfig

    if text is None:
        return None
    text = str(text).strip()
    try:
        kw = {"window": tuple(int(n) for n in text.split("x"))} if "x" in text else {"density": float(text)}
    except ValueError:
        raise ConfigError(f"--sparse {text!r}: give a density in (0, 1] like 0.25, or a window of tiles FxHxW "
                          "like 2x7x5") from None
    return SparseConfig(**kw)
