"""Procedural video clips with exactly known ground truth, for the embedded `vdrt-tiny` model.

A clip is 17 frames of 64x64 RGB holding one or two flat-coloured objects on a plain background:

    spec = sample_spec(np.random.default_rng(0))
    frames, truth = render_with_truth(spec)       # np.uint8 (T, H, W, 3), Truth
    frames, text, spec = dataset("train", 123)      # deterministic by (split, index)
    clips, texts = batch("train", 0, 256)           # np.uint8 (N, T, H, W, 3), list[str]

The world:
- shapes: circle, square, triangle (pointing up); sizes small (radius / half-size 6 px) and
  large (11 px); masks have no anti-aliasing, so every pixel is exactly a palette colour;
- object colours are pure RGB; every object colour is at least 145 (euclidean RGB) from every
  other object or background colour, so segmenting by nearest palette colour is unambiguous;
  the two objects of a clip never share a colour;
- motions: `bouncing` (diagonal, 30..60 degrees off the axes, reflecting off the walls, with a
  first reflection between frames 4 and 12), `moving left|right|up|down` (constant 1.2..2.2
  px/frame, start chosen so the object stays in frame), `falling` (starts near the top, gravity
  0.25..0.4 px/frame^2, bounces on the floor with restitution 0.4..0.7);
- every object stays fully inside the frame on every frame; two objects overlap on at most 2
  frames (rejection sampling), so each stays visible.

Coordinates are (x, y) = (column, row), y pointing down. Splits use disjoint seed spaces:
`seed = SPLIT_OFFSETS[split] + index` with offsets 0 (train), 2**40 (val), 2**41 (test).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from vdrt.errors import ConfigError

T, H, W = 17, 64, 64
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 6, "large": 11}
MOTIONS = ("bouncing", "moving left", "moving right", "moving up", "moving down", "falling")
COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "purple": (160, 0, 255),
}
BACKGROUNDS = {
    "black": (0, 0, 0),
    "grey": (80, 80, 80),
    "navy": (0, 0, 110),
    "brown": (110, 60, 20),
}
SPLIT_OFFSETS = {"train": 0, "val": 1 << 40, "test": 1 << 41}
MAX_OVERLAP_FRAMES = 2
_AXIS_VELOCITY = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}


@dataclass(frozen=True)
class ObjectSpec:
    """One object: what it is and how it moves. Positions are the mask centre, in pixels."""

    shape: str
    colour: str
    size: str
    motion: str
    start: tuple[float, float]  # (x, y) at frame 0
    velocity: tuple[float, float]  # (vx, vy) px/frame at frame 0
    gravity: float = 0.0  # px/frame^2, `falling` only
    restitution: float = 0.0  # floor bounce factor, `falling` only

    @property
    def radius(self) -> int:
        return SIZES[self.size]


@dataclass(frozen=True)
class ClipSpec:
    """A whole clip; objects later in the tuple are drawn on top."""

    objects: tuple[ObjectSpec, ...]
    background: str
    seed: int | None = None


@dataclass(frozen=True)
class Truth:
    """Ground truth per object (K) and frame (T), from the rendered (visible) pixels."""

    centroids: np.ndarray  # (K, T, 2) float64 (x, y) of the visible pixels; NaN where hidden
    areas: np.ndarray  # (K, T) int64 visible pixel counts
    positions: np.ndarray  # (K, T, 2) float64 unrounded mask centres


# ---------------------------------------------------------------- masks


@lru_cache(maxsize=None)
def shape_offsets(shape: str, size: str) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) int64 offsets, relative to the mask centre, of the pixels a shape covers."""
    r = SIZES[size]
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    if shape == "circle":
        inside = dx**2 + dy**2 <= (r + 0.5) ** 2
    elif shape == "square":
        inside = np.ones_like(dx, dtype=bool)
    elif shape == "triangle":
        inside = np.abs(dx) <= (dy + r) // 2  # apex at the top, full-width base at the bottom
    else:
        raise ConfigError(f"unknown shape {shape!r}; use one of {SHAPES}")
    return dy[inside].astype(np.int64), dx[inside].astype(np.int64)


# ---------------------------------------------------------------- motion


def _fold(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect unconstrained positions back into [lo, hi] (elastic walls)."""
    span = hi - lo
    u = np.mod(p - lo, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def _falling_y(y0: float, v0: float, g: float, e: float, floor: float) -> np.ndarray:
    y, v, out = y0, v0, [y0]
    for _ in range(T - 1):
        v += g
        y += v
        if y > floor:
            y, v = floor - (y - floor) * e, -v * e
        out.append(y)
    return np.asarray(out)


_TIME = np.arange(T, dtype=np.float64)


@lru_cache(maxsize=4096)
def trajectory(obj: ObjectSpec) -> np.ndarray:
    """Mask-centre positions over the clip: read-only float64 (T, 2) as (x, y)."""
    r = float(obj.radius)
    pos = np.empty((T, 2))
    pos[:, 0] = obj.start[0] + obj.velocity[0] * _TIME
    if obj.motion == "falling":
        pos[:, 1] = _falling_y(obj.start[1], obj.velocity[1], obj.gravity, obj.restitution, H - 1 - r)
    else:
        pos[:, 1] = obj.start[1] + obj.velocity[1] * _TIME
    if obj.motion == "bouncing":
        pos[:, 0] = _fold(pos[:, 0], r, W - 1 - r)
        pos[:, 1] = _fold(pos[:, 1], r, H - 1 - r)
    pos.flags.writeable = False
    return pos


# ---------------------------------------------------------------- rendering


@lru_cache(maxsize=None)
def _byte_offsets(shape: str, size: str) -> np.ndarray:
    """int64 (P*3,) byte offsets of a shape's pixels in a C-contiguous (H, W, 3) frame."""
    dy, dx = shape_offsets(shape, size)
    return (((dy * W + dx) * 3)[:, None] + np.arange(3)).ravel()


@lru_cache(maxsize=None)
def _colour_bytes(colour: str, shape: str, size: str) -> np.ndarray:
    return np.tile(np.asarray(COLOURS[colour], np.uint8), len(shape_offsets(shape, size)[0]))


@lru_cache(maxsize=None)
def _background_clip(background: str) -> np.ndarray:
    clip = np.empty((T, H, W, 3), np.uint8)
    clip[:] = BACKGROUNDS[background]
    clip.flags.writeable = False
    return clip


def _paint_fast(flat: np.ndarray, obj: ObjectSpec, c: np.ndarray) -> None:
    """Paint a fully visible object on a flat uint8 (T*H*W*3,) clip; c: int64 (T, 2) centres."""
    base = ((np.arange(T) * H + c[:, 1]) * W + c[:, 0]) * 3  # (T,)
    flat[base[:, None] + _byte_offsets(obj.shape, obj.size)[None]] = _colour_bytes(obj.colour, obj.shape, obj.size)


def _paint(frames: np.ndarray, obj: ObjectSpec, pos: np.ndarray, owner: np.ndarray | None = None,
           k: int = 0) -> None:
    """Paint one object on all frames at once: frames (T, H, W, 3), pos (T, 2)."""
    c = np.rint(pos).astype(np.int64)
    r = obj.radius
    inside = (c.min() >= r) and (c[:, 0].max() < W - r) and (c[:, 1].max() < H - r)
    if owner is None and inside and frames.flags.c_contiguous:
        return _paint_fast(frames.reshape(-1), obj, c)
    dy, dx = shape_offsets(obj.shape, obj.size)
    ys = c[:, 1:2] + dy[None]  # (T, P)
    xs = c[:, 0:1] + dx[None]
    ts = np.broadcast_to(np.arange(T)[:, None], ys.shape)
    ok = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
    ts, ys, xs = ts[ok], ys[ok], xs[ok]
    frames[ts, ys, xs] = COLOURS[obj.colour]
    if owner is not None:
        owner[ts, ys, xs] = k


def _check(spec: ClipSpec) -> None:
    if spec.background not in BACKGROUNDS:
        raise ConfigError(f"unknown background {spec.background!r}; use one of {tuple(BACKGROUNDS)}")
    for o in spec.objects:
        if o.colour not in COLOURS or o.size not in SIZES or o.motion not in MOTIONS:
            raise ConfigError(
                f"bad object {o}; colours {tuple(COLOURS)}, sizes {tuple(SIZES)}, motions {MOTIONS}"
            )


def render(spec: ClipSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Render a clip: np.uint8 (T, H, W, 3), into `out` when given."""
    _check(spec)
    frames = np.empty((T, H, W, 3), np.uint8) if out is None else out
    if frames.shape != (T, H, W, 3) or frames.dtype != np.uint8:
        raise ConfigError(f"out buffer is {frames.dtype} {frames.shape}; need uint8 {(T, H, W, 3)}")
    np.copyto(frames, _background_clip(spec.background))
    for obj in spec.objects:
        _paint(frames, obj, trajectory(obj))
    return frames


def _truth(owner: np.ndarray, positions: np.ndarray) -> Truth:
    K = positions.shape[0]
    yy, xx = np.mgrid[0:H, 0:W]
    areas = np.zeros((K, T), np.int64)
    cents = np.full((K, T, 2), np.nan)
    for k in range(K):
        m = owner == k  # (T, H, W)
        areas[k] = m.sum(axis=(1, 2))
        seen = areas[k] > 0
        cents[k, seen, 0] = (m * xx).sum(axis=(1, 2))[seen] / areas[k, seen]
        cents[k, seen, 1] = (m * yy).sum(axis=(1, 2))[seen] / areas[k, seen]
    return Truth(centroids=cents, areas=areas, positions=positions)


def render_with_truth(spec: ClipSpec) -> tuple[np.ndarray, Truth]:
    """Render a clip and its per-object, per-frame ground truth (visible centroids and areas)."""
    _check(spec)
    frames = render(ClipSpec((), spec.background))
    owner = np.full((T, H, W), -1, np.int64)
    positions = np.stack([trajectory(o) for o in spec.objects]) if spec.objects else np.zeros((0, T, 2))
    for k, obj in enumerate(spec.objects):
        _paint(frames, obj, positions[k], owner, k)
    return frames, _truth(owner, positions)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., T, H, W, 3) -> float32 (..., 3, T, H, W) in [-1, 1]."""
    x = np.asarray(frames).astype(np.float32) / 127.5 - 1.0
    return np.moveaxis(x, -1, -4)


def to_uint8(x) -> np.ndarray:
    """float (..., 3, T, H, W) in [-1, 1] (numpy or a CPU tensor) -> uint8 (..., T, H, W, 3)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float32), -4, -1)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- sampling


def _q(v: float) -> float:
    return round(float(v), 3)  # short, repr-stable numbers in specs


def _axis_object(base: ObjectSpec, u: np.ndarray) -> ObjectSpec:
    """Constant velocity along an axis, starting where the whole path stays in frame; u: 3 uniforms."""
    r = base.radius
    lo, hi = float(r), float(W - 1 - r)
    speed = 1.2 + 1.0 * u[0]
    travel = speed * (T - 1)
    ux, uy = _AXIS_VELOCITY[base.motion]
    along = lo + travel + (hi - lo - travel) * u[1] if (ux + uy) < 0 else lo + (hi - lo - travel) * u[1]
    across = lo + (hi - lo) * u[2]
    start = (along, across) if ux else (across, along)
    return replace(base, start=(_q(start[0]), _q(start[1])), velocity=(_q(ux * speed), _q(uy * speed)))


def _falling_object(base: ObjectSpec, u: np.ndarray) -> ObjectSpec:
    """Starts within 8 px of the top, gravity 0.25..0.4, floor restitution 0.4..0.7; u: 5 uniforms."""
    r = base.radius
    start = (_q(r + (W - 1 - 2 * r) * u[0]), _q(r + 8 * u[1]))
    return replace(base, start=start, velocity=(0.0, _q(u[2])), gravity=_q(0.25 + 0.15 * u[3]),
                   restitution=_q(0.4 + 0.3 * u[4]))


def _first_reversal(pos: np.ndarray) -> int:
    """Frame index of the first turning point of x or y, or -1 when the motion is straight."""
    v = np.diff(pos, axis=0)  # (T-1, 2)
    flips = np.nonzero((v[1:] * v[:-1] < 0).any(axis=1))[0]
    return int(flips[0]) + 1 if flips.size else -1


def _bouncing_object(rng: np.random.Generator, base: ObjectSpec) -> ObjectSpec:
    """Diagonal speed 2.5..4 px/frame; redrawn until the first wall reflection is on frames 4..12."""
    lo, span = float(base.radius), float(W - 1 - 2 * base.radius)
    for _ in range(64):
        u = rng.random(5)
        speed, angle = 2.5 + 1.5 * u[0], np.deg2rad(int(u[1] * 4) * 90 + 30 + 30 * u[2])
        cand = replace(base, start=(_q(lo + span * u[3]), _q(lo + span * u[4])),
                       velocity=(_q(speed * np.cos(angle)), _q(speed * np.sin(angle))))
        if 4 <= _first_reversal(trajectory(cand)) <= 12:
            return cand
    return cand  # practically unreachable: each try succeeds with probability ~0.5


def _pick(options, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _object(rng: np.random.Generator, colour: str) -> ObjectSpec:
    u = rng.random(8)
    motion = _pick(MOTIONS, u[2])
    base = ObjectSpec(_pick(SHAPES, u[0]), colour, _pick(tuple(SIZES), u[1]), motion, (0.0, 0.0), (0.0, 0.0))
    if motion == "bouncing":
        return _bouncing_object(rng, base)
    if motion == "falling":
        return _falling_object(base, u[3:])
    return _axis_object(base, u[3:])


def _overlap_frames(a: ObjectSpec, b: ObjectSpec) -> int:
    """Frames on which the two objects' bounding boxes touch."""
    d = np.abs(trajectory(a) - trajectory(b))  # (T, 2)
    reach = a.radius + b.radius + 1
    return int(((d[:, 0] <= reach) & (d[:, 1] <= reach)).sum())


def _two_objects(rng: np.random.Generator, colours: list[str]) -> tuple[ObjectSpec, ...]:
    """Redraw until the two objects overlap on at most MAX_OVERLAP_FRAMES frames (the second
    object 16 times per first object, 16 first objects); else the least overlapping pair."""
    best, best_n = None, T + 1
    for _ in range(16):
        first = _object(rng, colours[0])
        for _ in range(16):
            pair = (first, _object(rng, colours[1]))
            n = _overlap_frames(*pair)
            if n <= MAX_OVERLAP_FRAMES:
                return pair
            best, best_n = (pair, n) if n < best_n else (best, best_n)
    return best


def sample_spec(rng: np.random.Generator, two_objects_prob: float = 0.3, seed: int | None = None) -> ClipSpec:
    """Draw a random clip spec; `seed` is only recorded in the spec."""
    u = rng.random(4)
    colours = [_pick(tuple(COLOURS), u[0])]
    colours.append(_pick([c for c in COLOURS if c != colours[0]], u[1]))
    two = u[2] < two_objects_prob
    objects = _two_objects(rng, colours) if two else (_object(rng, colours[0]),)
    return ClipSpec(objects=objects, background=_pick(tuple(BACKGROUNDS), u[3]), seed=seed)


def split_seed(split: str, index: int) -> int:
    """The fixed seed of clip `index` of `split`; the three splits' seed spaces are disjoint."""
    if split not in SPLIT_OFFSETS:
        raise ConfigError(f"unknown split {split!r}; use one of {tuple(SPLIT_OFFSETS)}")
    if not 0 <= index < (1 << 40):
        raise ConfigError(f"clip index {index} is outside [0, 2**40)")
    return SPLIT_OFFSETS[split] + int(index)


def dataset_spec(split: str, index: int, two_objects_prob: float = 0.3) -> tuple[ClipSpec, str]:
    """The spec and caption of clip `index` of `split`, without rendering."""
    from vdrt.export.tiny.data.captions import caption  # captions imports this module's word lists

    seed = split_seed(split, index)
    rng = np.random.default_rng(seed)
    spec = sample_spec(rng, two_objects_prob, seed=seed)
    return spec, caption(spec, rng)


def dataset(split: str, index: int, two_objects_prob: float = 0.3) -> tuple[np.ndarray, str, ClipSpec]:
    """Clip `index` of `split`: (frames uint8 (T, H, W, 3), caption, spec), deterministic."""
    spec, text = dataset_spec(split, index, two_objects_prob)
    return render(spec), text, spec


def batch(split: str, start: int, n: int, two_objects_prob: float = 0.3,
          out: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Clips start..start+n-1 of `split`: (np.uint8 (N, T, H, W, 3), captions).

    Pass a reused `out` buffer (N, T, H, W, 3) in a training loop to skip page-faulting fresh memory.
    """
    out = np.empty((n, T, H, W, 3), np.uint8) if out is None else out
    if out.shape != (n, T, H, W, 3) or out.dtype != np.uint8:
        raise ConfigError(f"out buffer is {out.dtype} {out.shape}; need uint8 {(n, T, H, W, 3)}")
    texts = []
    for i in range(n):
        spec, text = dataset_spec(split, start + i, two_objects_prob)
        render(spec, out=out[i])
        texts.append(text)
    return out, texts
