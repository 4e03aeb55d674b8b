"""Shape profiles: min/opt/max per dynamic dim, in LATENT units, checked against the model.

Dims: batch, frames, height, width (latent grid sizes the denoiser sees) and text_len (prompt
tokens). Each dim also carries the multiple it must be (the patch size for frames / height /
width), which becomes a `torch.export.Dim` on the patch count (height = 2*h for 2x2 patches).

The CLI takes pixel sizes (`--frames 5:9:17`) and converts them with the model's factors:
pixel-space models 1:1; Wan's VAE (F-1)/4+1 frames and /8 spatially; other latent models /8
spatially. Everything that cannot be built raises a ConfigError naming the multiple needed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from vdrt.errors import ConfigError

DIMS = ("batch", "frames", "height", "width", "text_len")
SPATIAL = ("frames", "height", "width")


@dataclass(frozen=True)
class Range:
    min: int
    opt: int
    max: int
    multiple: int = 1

    @property
    def dynamic(self) -> bool:
        return self.min < self.max

    def example(self) -> int:
        """The size to trace with: opt, but >= 2 multiples when dynamic (sizes 0/1 would be specialized)."""
        if not self.dynamic:
            return self.opt
        m = self.multiple
        return max(self.opt, min(2 * m, self.max // m * m))

    def to_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max, "multiple": self.multiple}


@dataclass(frozen=True)
class Profile:
    dims: dict

    def __getitem__(self, dim: str) -> Range:
        return self.dims[dim]

    def to_dict(self) -> dict:
        return {k: r.to_dict() for k, r in self.dims.items()}

    def narrowed(self, dim: str, lo: int, hi: int) -> "Profile":
        r = self.dims[dim]
        lo, hi = max(r.min, lo), min(r.max, hi)
        return Profile({**self.dims, dim: replace(r, min=lo, max=hi, opt=min(max(r.opt, lo), hi))})


def multiples(config) -> dict[str, int]:
    pt, ph, pw = config.patch_size
    return {"batch": 1, "frames": pt, "height": ph, "width": pw, "text_len": 1}


def as_triple(name: str, value) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    try:
        t = tuple(int(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"shape {name} must be an int or (min, opt, max); got {value!r}") from e
    if len(t) != 3:
        raise ConfigError(f"shape {name} must be (min, opt, max); got {value!r}")
    return t


def profile(config, shapes: dict) -> Profile:
    """`shapes` {dim: (min, opt, max)} in latent units -> a validated Profile (batch, text_len defaulted)."""
    if not shapes:
        raise ConfigError("shapes are needed: {'frames': (min, opt, max), 'height': ..., 'width': ...} in latent "
                          "units (and optionally 'batch', 'text_len')")
    unknown = sorted(set(shapes) - set(DIMS))
    if unknown:
        raise ConfigError(f"unknown shape dims {unknown}; known: {list(DIMS)}")
    missing = [d for d in SPATIAL if d not in shapes]
    if missing:
        raise ConfigError(f"shapes lack {missing}: give (min, opt, max) in latent units for each")
    text_len = getattr(config, "text_len", 512)
    full = {"batch": (1, 2, 2), "text_len": (1, text_len, text_len), **shapes}
    mult = multiples(config)
    dims = {d: Range(*as_triple(d, full[d]), multiple=mult[d]) for d in DIMS}
    _validate(config, dims)
    return Profile(dims)


def _validate(config, dims: dict) -> None:
    for d, r in dims.items():
        if not 1 <= r.min <= r.opt <= r.max:
            raise ConfigError(f"shape {d}: need 1 <= min <= opt <= max; got {r.min}:{r.opt}:{r.max}")
        bad = [v for v in (r.min, r.opt, r.max) if v % r.multiple]
        if bad:
            raise ConfigError(f"shape {d}: latent sizes must be multiples of {r.multiple} (the patch size); "
                              f"got {r.min}:{r.opt}:{r.max}")
    limit = _grid_limit(config)
    if limit is not None:
        for d in SPATIAL:
            if dims[d].max // dims[d].multiple > limit[1]:
                raise ConfigError(f"shape {d}: max {dims[d].max} exceeds the model's {limit[0]} "
                                  f"({limit[1]} per axis)")
    max_frames = getattr(config, "max_frames", None)
    if max_frames is not None and dims["frames"].max > max_frames:
        raise ConfigError(f"shape frames: max {dims['frames'].max} exceeds max_frames={max_frames} of this model")


def _grid_limit(config):
    if getattr(config, "family", "") == "wan":
        return ("rope_max_seq_len patches", config.rope_max_seq_len)
    return None


# ---------------------------------------------------------------- pixels (CLI) -> latents


def pixel_factors(config) -> dict:
    """How many pixels one latent is, per dim: {'frames': ('wan-vae', 4) | ('1:1', 1), 'height': 8, ...}.
    Pixel-space models (3 input channels, e.g. the embedded vdrt-tiny-wan-teacher) are 1:1 whatever their family."""
    if config.in_channels == 3:
        return {"frames": ("1:1", 1), "height": 1, "width": 1}
    if getattr(config, "family", "") == "wan":
        return {"frames": ("wan-vae", 4), "height": 8, "width": 8}
    return {"frames": ("1:1", 1), "height": 8, "width": 8}


def parse_triple(flag: str, text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' or 'N' -> (min, opt, max)."""
    parts = str(text).split(":")
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ConfigError(f"--{flag} expects MIN:OPT:MAX (e.g. 5:9:17) or one number; got {text!r}")
    return vals


def latent_from_pixels(config, dim: str, pixels: int) -> int:
    f = pixel_factors(config)
    patch = multiples(config)[dim]
    if dim == "frames":
        kind, k = f["frames"]
        if kind == "wan-vae":
            if (pixels - 1) % k:
                raise ConfigError(f"--frames {pixels}: Wan's VAE needs 4k+1 frames (e.g. {pixels - (pixels - 1) % k}"
                                  f" or {pixels - (pixels - 1) % k + k})")
            lat = (pixels - 1) // k + 1
        else:
            lat = pixels
        if lat % patch:
            raise ConfigError(f"--frames {pixels}: the latent frame count must be a multiple of {patch}")
        return lat
    need = f[dim] * patch
    if pixels % need:
        raise ConfigError(f"--{dim} {pixels}: must be a multiple of {need} pixels (VAE factor {f[dim]} x patch "
                          f"{patch})")
    return pixels // f[dim]


def shapes_from_pixels(config, frames, height, width, batch=None, text_len=None) -> dict:
    """CLI strings (MIN:OPT:MAX in pixels; batch and text_len as is) -> latent shapes for `profile`."""
    out = {}
    for dim, text in (("frames", frames), ("height", height), ("width", width)):
        out[dim] = tuple(latent_from_pixels(config, dim, v) for v in parse_triple(dim, text))
    if batch is not None:
        out["batch"] = parse_triple("batch", batch)
    if text_len is not None:
        out["text_len"] = parse_triple("text-len", text_len)
    return out


# ---------------------------------------------------------------- signatures, examples, torch.export dims


def signature(config, dtype: torch.dtype) -> tuple[list[dict], list[dict]]:
    """The engine's inputs and outputs for a vdrt model: names, dtypes, symbolic shapes."""
    from vdrt.engines.manifest import dtype_name

    grid = ["frames", "height", "width"]
    dt = dtype_name(dtype)
    inputs = [{"name": "latents", "dtype": dt, "shape": ["batch", config.in_channels, *grid]},
              {"name": "timestep", "dtype": "float32", "shape": ["batch"]},
              {"name": "context", "dtype": dt, "shape": ["batch", "text_len", config.text_dim]}]
    if getattr(config, "cond_channels", 0):
        inputs.append({"name": "cond", "dtype": dt, "shape": ["batch", config.cond_channels, *grid]})
    if getattr(config, "image_dim", None):
        inputs.append({"name": "image_embeds", "dtype": dt, "shape": ["batch", 257, config.image_dim]})
    outputs = [{"name": "prediction", "dtype": dt, "shape": ["batch", config.out_channels, *grid]}]
    return inputs, outputs


def example_inputs(inputs: list[dict], prof: Profile, device, seed: int = 0) -> tuple:
    """Fresh random tensors at the profile's example sizes (timesteps in [0, 1000))."""
    from vdrt.engines.manifest import DTYPES

    g = torch.Generator().manual_seed(seed)
    out = []
    for spec in inputs:
        shape = [prof[d].example() if isinstance(d, str) else d for d in spec["shape"]]
        t = torch.rand(shape, generator=g) * 1000 if spec["name"] == "timestep" else torch.randn(shape, generator=g)
        out.append(t.to(device=device, dtype=DTYPES[spec["dtype"]]))
    return tuple(out)


def export_dims(inputs: list[dict], prof: Profile, auto: bool = False) -> tuple:
    """torch.export dynamic_shapes (one dict per input): a Dim per dynamic dim, on the patch count when the
    dim must be a multiple (height = 2*h). `auto=True` uses Dim.AUTO ranges for the other dims (the generic
    path); dims on a patch count stay explicit, which also gives Inductor clean sizes for strided convs."""
    from torch.export import Dim

    made: dict = {}

    def dim(name: str):
        r = prof[name]
        if auto and r.multiple == 1:
            return Dim.AUTO(min=r.min, max=r.max)
        if name not in made:
            m = r.multiple
            base = Dim(name if m == 1 else f"{name}_patches", min=r.min // m, max=r.max // m)
            made[name] = base if m == 1 else m * base
        return made[name]

    return tuple({i: dim(d) for i, d in enumerate(spec["shape"]) if isinstance(d, str) and prof[d].dynamic}
                 or None for spec in inputs)
