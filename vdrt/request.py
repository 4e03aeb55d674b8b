"""`GenerateRequest`: one frozen, typed, validated description of a generation.

The CLI (flags and the TOML run config), and `Pipeline.__call__` (vdrt's names and diffusers'
names) all build one; the Pipeline runs it. Validation happens in two stages, both before any
weight is loaded or any step runs:

1. on construction, whatever needs no model: types (a bool is not an int, a string is not a
   number: `InputTypeError`, a TypeError), ranges (steps <= 1000, seed in [0, 2^63), sizes,
   guidance, strength, fps), mode and the media it needs, and the output path (known suffix,
   writable folder, an existing file only with `force`);
2. `resolved(defaults, geometry)`: the unset fields are filled from the model's `Defaults` (its
   card or config, never its name), and the sizes are checked against the model's multiples and,
   for models that carry one, their trained size. The memory estimate needs the model's config
   and the device: `vdrt.pipeline.memory.check` (the CLI and the Pipeline call it next).

Inputs a generation would not use follow one rule: an input that belongs to ANOTHER MODE (an
image, video or mask the mode does not take, `strength` outside v2v, `known_frames` outside
extend) is refused, since it says the caller meant another mode; an input the chosen GUIDANCE
turns off (a negative prompt at guidance 1, e.g. under a few-step recipe) is logged as unused,
as diffusers ignores it.

    req = GenerateRequest(prompt="a red circle bouncing", num_steps=4, seed=0)
    video = vdrt.Pipeline.from_pretrained("vdrt-tiny")(req)
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from pathlib import Path
from typing import Any

from vdrt.errors import ConfigError, InputTypeError

log = logging.getLogger(__name__)

MODES = ("t2v", "i2v", "extend", "interpolate", "inpaint", "outpaint", "v2v", "continue", "slowmo", "upscale", "remove",
         "grow")
OUTPUT_TYPES = ("video", "np", "pil", "pt", "latent")
WRITE_SUFFIXES = (".mp4", ".gif", ".webp")
SEED_LIMIT = 2**63
MAX_STEPS = 1000  # the flow-matching schedules' training timesteps; more steps sample no finer
MAX_VIDEOS = 1024  # prompts x num_videos per call (each is generated in turn and held for the output)
MAX_SIDE = 16384  # pixels per side; the memory estimate refuses most sizes well below this
MAX_FRAMES = 16384
DEFAULT_STRENGTH = 0.8  # v2v
ONLY_IN = {"strength": ("v2v",), "known_frames": ("extend", "continue")}  # settings of one mode (refused in the others)
MEDIA = {"t2v": (), "i2v": ("image", "video"), "extend": ("video",), "interpolate": ("image", "video"),
         "inpaint": ("image", "video", "mask"), "outpaint": ("image", "video", "mask"), "v2v": ("video",),
         "continue": ("video",), "slowmo": ("video",), "upscale": ("video",), "remove": ("video", "mask"),
         "grow": ("image", "video")}


@dataclasses.dataclass(frozen=True)
class Defaults:
    """What a generation uses when the request does not say: from the model's card or config."""

    num_frames: int = 17
    height: int = 64
    width: int = 64
    num_steps: int = 4
    guidance: float = 1.0
    sampler: str = "euler"
    shift: float = 1.0
    fps: int = 8
    sampler_timesteps: tuple = ()  # few-step samplers: the distilled timesteps
    trained_size: tuple | None = None  # (frames, height, width) a model was trained at; other sizes refused
    trained_range: tuple | None = None  # ((min, max) frames, (min, max) side, side multiple): sizes outside refused
    recipe: str | None = None  # a few-step recipe the model's own files name (vdrt.samplers.recipes)

    @classmethod
    def from_card(cls, d: dict, trained_range: dict | None = None) -> "Defaults":
        """A model card's `defaults` section and its `trained_range` ({"frames": [lo, hi], "side": [lo, hi],
        "multiple": m}); without a range, its default sizes are the only trained size."""
        d = {**d, "sampler_timesteps": tuple(d.get("sampler_timesteps") or ())}
        if trained_range:
            r = trained_range
            return cls(**d, trained_range=(tuple(r["frames"]), tuple(r["side"]), int(r.get("multiple", 1))))
        return cls(**d, trained_size=(d["num_frames"], d["height"], d["width"]))

    def replace(self, **kw) -> "Defaults":
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


@dataclasses.dataclass(frozen=True, eq=False)
class GenerateRequest:
    """One generation (or `num_videos` per prompt); None means "the model's default"."""

    prompt: str | list = ""
    negative_prompt: str = ""
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    num_steps: int | None = None
    guidance: float | None = None
    guidance_range: tuple = (0.0, 1.0)
    seed: int = 0
    generator: Any = None  # a torch.Generator: used instead of `seed` for every random draw
    sampler: str | None = None
    shift: float | None = None
    mode: str = "t2v"
    image: Any = None
    video: Any = None
    mask: Any = None
    strength: float | None = None  # v2v only (default 0.8)
    known_frames: int | None = None
    fps: int | None = None
    num_videos: int = 1  # per prompt (diffusers: num_videos_per_prompt)
    prompt_embeds: Any = None
    negative_prompt_embeds: Any = None
    image_embeds: Any = None
    latents: Any = None  # initial noise (B, C, F, h, w) instead of a draw from the seed
    output_type: str = "video"
    out: str | None = None  # where the CLI writes the result
    force: bool = False  # an existing `out` may be replaced

    def __post_init__(self):
        _check_prompts(self)
        _check_counts(self)
        _check_numbers(self)
        _check_words(self)
        _check_arrays(self)
        _check_mode(self)
        if self.out is not None:
            check_output(self.out, self.force)

    @property
    def prompts(self) -> list[str]:
        return list(self.prompt) if isinstance(self.prompt, (list, tuple)) else [self.prompt]

    def replace(self, **kw) -> "GenerateRequest":
        return dataclasses.replace(self, **kw)

    def resolved(self, defaults: Defaults, geometry=None, name: str = "this model") -> "GenerateRequest":
        """Unset fields from `defaults`; sizes checked against `geometry` (LatentGeometry) and the trained size."""
        d = defaults.replace(num_frames=self.num_frames, height=self.height, width=self.width,
                             num_steps=self.num_steps, guidance=self.guidance, sampler=self.sampler,
                             shift=self.shift, fps=self.fps)
        _check_trained(d, name)
        if geometry is not None:
            geometry.latent_shape(d.num_frames, d.height, d.width)
        _check_sampler(d.sampler)
        if self.known_frames is not None and self.known_frames >= d.num_frames:
            raise ConfigError(f"known_frames={self.known_frames} must be below num_frames ({d.num_frames}): extend "
                              "keeps the first known_frames frames and generates the rest")
        _log_unused_negative(self, d.guidance)
        strength = DEFAULT_STRENGTH if self.mode == "v2v" and self.strength is None else self.strength
        if strength is not None and int(d.num_steps * strength) < 1:  # as Sampler.start_index, before any work
            raise ConfigError(f"strength {strength} with {d.num_steps} steps runs no step (v2v runs the last "
                              f"int(steps x strength)); raise --strength or --steps")
        return self.replace(num_frames=d.num_frames, height=d.height, width=d.width, num_steps=d.num_steps,
                            guidance=d.guidance, sampler=d.sampler, shift=d.shift, fps=d.fps, strength=strength)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _type_error(name: str, v, want: str) -> InputTypeError:
    return InputTypeError(f"{name}={v!r} must be {want}, not a {type(v).__name__}")


def _positive_int(name: str, v, limit: int | None = None) -> None:
    if v is None:
        return
    if not _is_int(v):
        raise _type_error(name, v, "a positive integer")
    if v <= 0:
        raise ConfigError(f"{name}={v!r} must be a positive integer")
    if limit is not None and v > limit:
        raise ConfigError(f"{name}={v} is above the limit of {limit}; {_LIMIT_FIX.get(name, 'ask for less')}")


_LIMIT_FIX = {"num_steps": "flow-matching schedules have 1000 training timesteps, so more steps sample no finer "
                           "(Wan uses 50, few-step models 1-8)",
              "num_videos": "call the pipeline in a loop for more videos",
              "height": "generate smaller and upscale", "width": "generate smaller and upscale",
              "num_frames": "generate in pieces (mode extend continues a video)"}


def _check_counts(r: GenerateRequest) -> None:
    for name, limit in (("num_frames", MAX_FRAMES), ("height", MAX_SIDE), ("width", MAX_SIDE),
                        ("num_steps", MAX_STEPS), ("known_frames", None), ("num_videos", MAX_VIDEOS)):
        _positive_int(name, getattr(r, name), limit)
    if len(r.prompts) * r.num_videos > MAX_VIDEOS:
        raise ConfigError(f"{len(r.prompts)} prompts x num_videos={r.num_videos} is above the limit of {MAX_VIDEOS} "
                          f"videos per call; {_LIMIT_FIX['num_videos']}")


def _check_prompts(r: GenerateRequest) -> None:
    prompts = r.prompt if isinstance(r.prompt, (list, tuple)) else [r.prompt]
    if not all(isinstance(p, str) for p in prompts):
        raise InputTypeError(f"prompt must be a string or a non-empty list of strings, got {r.prompt!r}")
    if not prompts:
        raise ConfigError(f"prompt must be a string or a non-empty list of strings, got {r.prompt!r}")
    if not isinstance(r.negative_prompt, str):
        raise InputTypeError(f"negative_prompt must be a string, got {r.negative_prompt!r}")


def _real(name: str, v, want: str) -> None:
    if v is not None and not _is_real(v):
        raise _type_error(name, v, want)


def _check_numbers(r: GenerateRequest) -> None:
    if not _is_int(r.seed):
        raise _type_error("seed", r.seed, "an integer in [0, 2^63)")
    if not 0 <= r.seed < SEED_LIMIT:
        raise ConfigError(f"seed={r.seed!r} must be an integer in [0, 2^63)")
    for name, want in (("guidance", "a finite number >= 0"), ("shift", "a finite number > 0"),
                       ("fps", "a positive number"), ("strength", "a number in (0, 1]")):
        _real(name, getattr(r, name), want)
    if r.guidance is not None and not 0 <= r.guidance < math.inf:
        raise ConfigError(f"guidance={r.guidance!r} must be a finite number >= 0 (1.0 = no classifier-free guidance)")
    _check_guidance_range(r.guidance_range)
    if r.shift is not None and not 0 < r.shift < math.inf:
        raise ConfigError(f"shift={r.shift!r} must be a finite number > 0 (1.0 = no shift)")
    if r.fps is not None and not 0 < r.fps < 1e4:
        raise ConfigError(f"fps={r.fps!r} must be a positive number below 10000")
    if r.strength is not None and not 0.0 < r.strength <= 1.0:
        raise ConfigError(f"strength={r.strength!r} must be in (0, 1] (1 = ignore the input video)")
    if r.generator is not None and type(r.generator).__name__ != "Generator":
        raise InputTypeError(f"generator must be a torch.Generator, got {type(r.generator).__name__}")


def _check_guidance_range(gr) -> None:
    if not isinstance(gr, (tuple, list)):
        raise _type_error("guidance_range", gr, "a pair (start, end)")
    lo, hi = (tuple(gr) + (None, None))[:2]
    if len(gr) != 2 or not (_is_real(lo) and _is_real(hi) and 0 <= lo <= hi <= 1):
        raise ConfigError(f"guidance_range={gr!r} must be (start, end) with 0 <= start <= end <= 1")


def _check_words(r: GenerateRequest) -> None:
    """The enum-like fields and switches: strings from their lists, bools that are bools."""
    for name, known in (("mode", MODES), ("output_type", OUTPUT_TYPES)):
        v = getattr(r, name)
        if not isinstance(v, str):
            raise _type_error(name, v, f"one of {list(known)}")
    if r.output_type not in OUTPUT_TYPES:
        raise ConfigError(f"output_type={r.output_type!r} is not one of {list(OUTPUT_TYPES)}")
    if r.sampler is not None and not isinstance(r.sampler, str):
        raise _type_error("sampler", r.sampler, "a sampler name")
    if not isinstance(r.force, bool):
        raise _type_error("force", r.force, "True or False")
    if r.out is not None and not isinstance(r.out, (str, os.PathLike)):
        raise _type_error("out", r.out, "a path")


def _check_arrays(r: GenerateRequest) -> None:
    """Tensor inputs are tensors or arrays (their values are checked by the Pipeline, which has torch)."""
    for name in ("latents", "prompt_embeds", "negative_prompt_embeds", "image_embeds"):
        v = getattr(r, name)
        if v is not None and not (hasattr(v, "shape") and hasattr(v, "dtype")):
            raise _type_error(name, v, "a torch tensor or numpy array")


def _log_unused_negative(r: GenerateRequest, guidance: float) -> None:
    """The rule's second half (module doc): what guidance 1 turns off is logged, not refused."""
    if guidance == 1.0 and (r.negative_prompt or r.negative_prompt_embeds is not None):
        log.warning("the negative prompt is not used: guidance is 1 (no classifier-free guidance); "
                    "pass guidance > 1 (--guidance) to use it")


def _check_mode(r: GenerateRequest) -> None:
    if not isinstance(r.mode, str) or r.mode not in MODES:
        raise ConfigError(f"unknown mode {r.mode!r}; modes are {list(MODES)}")
    given = [k for k in ("image", "video", "mask") if getattr(r, k) is not None]
    unused = [k for k in given if k not in MEDIA[r.mode]]
    unused += [k for k, modes in ONLY_IN.items() if getattr(r, k) is not None and r.mode not in modes]
    if unused:
        users = sorted({m for k in unused for m in (ONLY_IN.get(k) or [m for m in MODES if k in MEDIA[m]])})
        raise ConfigError(f"mode {r.mode} does not use {', '.join(unused)}; drop it, or choose a mode that does "
                          f"({', '.join(users)})")
    for k in given:
        _check_media_path(k, getattr(r, k))
    if r.mode == "i2v" and r.image is None and r.video is None:
        raise ConfigError("mode i2v needs a first image: pass image= (CLI: --image PATH)")
    if r.mode in ("extend", "v2v", "continue", "slowmo", "upscale", "remove") and r.video is None:
        raise ConfigError(f"mode {r.mode} needs an input video: pass video= (CLI: --video PATH)")
    if r.mode == "grow" and r.video is None and r.image is None:
        raise ConfigError("mode grow needs the video (or image) to place in the larger canvas: pass video=")
    if r.mode in ("inpaint", "remove") and r.mask is None:
        raise ConfigError(f"mode {r.mode} needs a mask (True/white = generate; remove: one per frame, (T, H, W)): "
                          "pass mask= (CLI: --mask PATH)")


def _check_media_path(kind: str, v) -> None:
    if kind == "image" and isinstance(v, (list, tuple)) and len(v) == 2:  # interpolate: (first, last)
        for x in v:
            _check_media_path(kind, x)
        return
    if not _is_media(v):
        raise InputTypeError(f"{kind}= takes a path, a vdrt.Video, a uint8 array (H, W, 3) / (T, H, W, 3), a PIL "
                             f"image or a float tensor; got a {type(v).__name__}")
    if isinstance(v, (str, os.PathLike)) and not Path(v).exists():
        from vdrt.errors import MediaError

        raise MediaError(f"{kind} {str(v)!r} does not exist")


def _is_media(v) -> bool:
    """A path, array, tensor, Video or PIL image (duck-typed: no import of numpy, torch or Pillow here)."""
    return isinstance(v, (str, os.PathLike)) or hasattr(v, "shape") or hasattr(v, "frames") or \
        hasattr(v, "__array_interface__")


def _check_trained(d: Defaults, name: str) -> None:
    if d.trained_range:
        return _check_range(d, name)
    if d.trained_size and (d.num_frames, d.height, d.width) != tuple(d.trained_size):
        f, h, w = d.trained_size
        raise ConfigError(f"{name} was trained at {f} frames of {w}x{h} only; asked for {d.num_frames} "
                          f"frames of {d.width}x{d.height}. Use --frames {f} --height {h} --width {w}")


def _check_range(d: Defaults, name: str) -> None:
    (f0, f1), (s0, s1), m = d.trained_range
    ok = f0 <= d.num_frames <= f1 and all(s0 <= v <= s1 and v % m == 0 for v in (d.height, d.width))
    if not ok:
        raise ConfigError(f"{name} was trained at {f0}..{f1} frames and {s0}..{s1} px a side (multiples of {m}); "
                          f"asked for {d.num_frames} frames of {d.width}x{d.height}. Choose --frames, --height "
                          "and --width inside that range")


def _check_sampler(name: str) -> None:
    from vdrt import samplers

    if name not in samplers.names():
        raise ConfigError(f"unknown sampler {name!r}; known samplers: {samplers.names()}")


def check_output(out, force: bool = False) -> None:
    """The output path takes a known format, its folder can be written, and it is new unless `force`."""
    text = os.fspath(out)
    p = Path(text)
    folder = text.endswith(("/", os.sep)) or p.suffix == "" or p.is_dir()
    if not folder and p.suffix.lower() not in WRITE_SUFFIXES:
        raise ConfigError(f"cannot write {text!r}: unknown suffix {p.suffix!r}; use one of "
                          f"{', '.join(WRITE_SUFFIXES)}, or a folder path (a trailing '/') for PNG frames")
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(f"cannot write PNG frames to {text}: it is a file; give a suffix ({', '.join(WRITE_SUFFIXES)}) "
                          "or another folder")
    from vdrt.io import FRAME_NAME

    if folder and p.is_dir() and any(not FRAME_NAME.fullmatch(q.name) for q in p.iterdir()):
        raise ConfigError(f"cannot write PNG frames to {text}: it holds other files; choose a new or empty folder "
                          "(--force replaces only earlier frames)")
    if p.exists() and not force and not (folder and p.is_dir() and not any(p.iterdir())):
        raise ConfigError(f"{text} exists; pass --force to replace it, or choose another output path")
    parent = next((q for q in [p.parent, *p.parent.parents] if q.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write {text}: {parent} is not a writable folder")
