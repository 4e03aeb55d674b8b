"""The procedural world, batched: scene parameters as tensors, sampled and moved on any device.

    geo = Geometry(frames=17, height=64, width=64)
    scenes = sample_scenes(256, torch.Generator("cuda").manual_seed(0), geo, device="cuda")
    pos = trajectories(scenes)                  # (N, K, T, 2) mask centres in world units (x, y)

A scene holds K = 2 object slots (slot 1 is drawn in front of slot 0: the depth order) on a
plain background. World units are pixels of a 64 px tall canvas: a clip of height/width H x W
pixels renders at scale s = min(H, W) / 64 px per unit, so a 128 x 128 clip shows the same
scene as its 64 x 64 version at twice the resolution (what `upscale` trains on), and a 64 x 96
clip is a wider view of the same world (what growing `outpaint` trains on). A unit cell covers s x s
pixels: world x maps to pixel coordinate (x + 0.5) s - 0.5 (the identity at s = 1), and the canvas
spans x in [-0.5, W / s - 0.5], so object centres stay in [r, W / s - 1 - r] at every scale.

Motions (per frame, physical units, so longer clips show more of the same physics):
- `bouncing`: diagonal, 2.5..4 units/frame, 30..60 degrees off the axes, reflecting off the walls,
  redrawn until its first reflection falls on frames [q, T-1-q], q = clamp(T // 4, 2, 4);
- `moving left|right|up|down`: constant speed, travelling 30..85% of the free room over the clip
  (at least 10 units), from a start that keeps it in frame;
- `falling`: from within 8 units of the top, gravity 0.25..0.4 units/frame^2, bouncing on the
  floor with restitution 0.4..0.7.
Two-object scenes (`two_objects_prob`) are either `separate` (bounding boxes touch on at most 2
frames) or, with `occlusion_prob`, `occluding`: the front object passes over the back one on 3..
max(3, T // 2) frames, so the back object is partly or wholly hidden for a while and comes out
again. Every object stays inside the canvas on every frame. The two objects never share a colour.
Rejection sampling is vectorised: M candidates per object, the first valid one is kept (the least
bad when none is).
Alphabet: N scenes, K slots, M candidates, T frames, H, W pixels.
"""
from __future__ import annotations

import dataclasses

import torch

from vdrt.errors import ConfigError

SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 6, "large": 11}  # radius / half-size in world units
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
K_SLOTS = 2
CANDIDATES = 32
MAX_SEPARATE_OVERLAP = 2  # frames on which two `separate` objects' boxes may touch
AXIS_DIRS = {1: (-1.0, 0.0), 2: (1.0, 0.0), 3: (0.0, -1.0), 4: (0.0, 1.0)}  # motion id -> (ux, uy)
FRAMES_RANGE, SIDE_RANGE = (1, 65), (32, 256)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Clip size in pixels; `scale` px per world unit (64 px of the short side = 64 units)."""

    frames: int = 17
    height: int = 64
    width: int = 64

    def __post_init__(self):
        if not FRAMES_RANGE[0] <= self.frames <= FRAMES_RANGE[1]:
            raise ConfigError(f"world clips have {FRAMES_RANGE[0]}..{FRAMES_RANGE[1]} frames, asked {self.frames}")
        for side in (self.height, self.width):
            if not SIDE_RANGE[0] <= side <= SIDE_RANGE[1]:
                raise ConfigError(f"world clips are {SIDE_RANGE[0]}..{SIDE_RANGE[1]} px a side, asked "
                                  f"{self.height}x{self.width}")

    @property
    def scale(self) -> float:
        return min(self.height, self.width) / 64.0

    @property
    def extent(self) -> tuple[float, float]:
        """(x, y) of the last unit cell's centre: the canvas is [-0.5, extent + 0.5] in world units."""
        return self.width / self.scale - 1, self.height / self.scale - 1

    def to_pixels(self, pos: torch.Tensor) -> torch.Tensor:
        """World positions -> pixel coordinates (pixel centres at integers)."""
        return (pos + 0.5) * self.scale - 0.5

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.frames, self.height, self.width


@dataclasses.dataclass
class Scenes:
    """N scenes of K slots as tensors on one device; ids index SHAPES, COLOURS, SIZES, MOTIONS, BACKGROUNDS."""

    geometry: Geometry
    background: torch.Tensor  # (N,) long
    present: torch.Tensor  # (N, K) bool
    shape: torch.Tensor  # (N, K) long
    colour: torch.Tensor  # (N, K) long
    size: torch.Tensor  # (N, K) long
    motion: torch.Tensor  # (N, K) long
    start: torch.Tensor  # (N, K, 2) float32 (x, y) world units at frame 0
    velocity: torch.Tensor  # (N, K, 2) float32 units/frame at frame 0
    gravity: torch.Tensor  # (N, K) float32, `falling` only
    restitution: torch.Tensor  # (N, K) float32, `falling` only

    def __len__(self) -> int:
        return self.background.shape[0]

    @property
    def device(self) -> torch.device:
        return self.background.device

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "geometry"}

    def map(self, fn) -> Scenes:
        """A copy with `fn` applied to every tensor (indexing, .to(device), ...)."""
        return Scenes(self.geometry, **{k: fn(v) for k, v in self.tensors().items()})

    def radius(self) -> torch.Tensor:
        """(N, K) float32 radius in world units."""
        return radius_of(self.size)

    @classmethod
    def cat(cls, parts: list[Scenes]) -> Scenes:
        geo = {p.geometry for p in parts}
        if len(geo) != 1:
            raise ConfigError(f"cannot concatenate scenes of different geometries {sorted(geo, key=str)}")
        return cls(parts[0].geometry, **{k: torch.cat([p.tensors()[k] for p in parts]) for k in parts[0].tensors()})


def radius_of(size: torch.Tensor) -> torch.Tensor:
    table = torch.tensor(list(SIZES.values()), dtype=torch.float32, device=size.device)
    return table[size]


# ---------------------------------------------------------------- motion


def fold(p: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Reflect unconstrained positions back into [lo, hi] (elastic walls)."""
    span = hi - lo
    u = torch.remainder(p - lo, 2 * span)
    return lo + torch.where(u <= span, u, 2 * span - u)


def _falling_y(y0, v0, g, e, floor, frames: int) -> torch.Tensor:
    """(...,) start, speed, gravity, restitution, floor -> (..., T) heights; a floor bounce keeps e of the speed."""
    y, v, out = y0, v0, [y0]
    for _ in range(frames - 1):
        v = v + g
        y = y + v
        hit = y > floor
        y, v = torch.where(hit, floor - (y - floor) * e, y), torch.where(hit, -v * e, v)
        out.append(y)
    return torch.stack(out, -1)


def motion_path(motion, start, velocity, gravity, restitution, r, geo: Geometry) -> torch.Tensor:
    """Mask-centre positions of any batch of objects: (...) ids/params -> (..., T, 2) world units."""
    t = torch.arange(geo.frames, dtype=torch.float32, device=start.device)
    lin = start[..., None, :] + velocity[..., None, :] * t[:, None]  # (..., T, 2)
    ex, ey = geo.extent
    lo, hi = r[..., None], torch.stack([ex - r, ey - r], -1)[..., None, :]  # (..., 1), (..., 1, 2)
    bounced = fold(lin, lo[..., None], hi)
    fall_y = _falling_y(start[..., 1], velocity[..., 1], gravity, restitution, ey - r, geo.frames)
    fallen = torch.stack([lin[..., 0], fall_y], -1)
    m = motion[..., None, None]
    return torch.where(m == 0, bounced, torch.where(m == 5, fallen, lin))


def trajectories(scenes: Scenes) -> torch.Tensor:
    """(N, K, T, 2) mask-centre positions in world units (absent slots get a path too; ignore them)."""
    s = scenes
    return motion_path(s.motion, s.start, s.velocity, s.gravity, s.restitution, s.radius(), s.geometry)


def first_reversal(pos: torch.Tensor) -> torch.Tensor:
    """(..., T, 2) -> (...,) frame of the first turn of x or y, -1 when the path is straight."""
    v = pos[..., 1:, :] - pos[..., :-1, :]
    flips = ((v[..., 1:, :] * v[..., :-1, :]) < 0).any(-1)  # (..., T-2)
    idx = flips.float().argmax(-1) + 1
    return torch.where(flips.any(-1), idx, torch.full_like(idx, -1))


def overlap_frames(pa, ra, pb, rb) -> torch.Tensor:
    """Frames on which two objects' bounding boxes touch: (..., T, 2), (...) x2 -> (...,) long."""
    reach = (ra + rb + 1)[..., None]
    d = (pa - pb).abs()
    return ((d[..., 0] <= reach) & (d[..., 1] <= reach)).sum(-1)


# ---------------------------------------------------------------- sampling


def _ids(u: torch.Tensor, n: int) -> torch.Tensor:
    return (u * n).long().clamp(max=n - 1)


def _candidates(motion, r, u, geo: Geometry):
    """Motion parameters of M candidates: motion, r (...), u (..., 8) uniforms -> start, velocity, g, e."""
    ex, ey = geo.extent
    hi = torch.stack([ex - r, ey - r], -1)  # (..., 2)
    room = hi - r[..., None]  # (..., 2)
    # bouncing: speed 2.5..4, angle 30..60 degrees inside one of the 4 quadrants
    speed = 2.5 + 1.5 * u[..., 0]
    angle = torch.deg2rad(_ids(u[..., 1], 4).float() * 90 + 30 + 30 * u[..., 2])
    b_start = r[..., None] + room * u[..., 3:5]
    b_vel = torch.stack([speed * torch.cos(angle), speed * torch.sin(angle)], -1)
    # axis motions: travel 30..85% of the room (>= 10 units) along the axis, start keeping it in frame
    ux = torch.tensor([0.0, -1, 1, 0, 0, 0], device=u.device)[motion]
    uy = torch.tensor([0.0, 0, 0, -1, 1, 0], device=u.device)[motion]
    along_room = torch.where(ux != 0, room[..., 0], room[..., 1])
    travel = torch.minimum(along_room, (along_room * (0.30 + 0.55 * u[..., 0])).clamp(min=10.0))
    a0 = r + (along_room - travel) * u[..., 3]  # start along the axis, moving in +
    a0 = torch.where(ux + uy < 0, a0 + travel, a0)
    across = r[..., None] + room * u[..., 4:5]  # (..., 2): the across position on either axis
    a_start = torch.where((ux != 0)[..., None], torch.stack([a0, across[..., 1]], -1),
                          torch.stack([across[..., 0], a0], -1))
    a_vel = torch.stack([ux, uy], -1) * (travel / max(geo.frames - 1, 1))[..., None]
    # falling: near the top, gravity 0.25..0.4, restitution 0.4..0.7
    f_start = torch.stack([r + room[..., 0] * u[..., 3], r + 8 * u[..., 4]], -1)
    f_vel = torch.stack([torch.zeros_like(r), u[..., 5]], -1)
    m = motion[..., None]
    start = torch.where(m == 0, b_start, torch.where(m == 5, f_start, a_start))
    vel = torch.where(m == 0, b_vel, torch.where(m == 5, f_vel, a_vel))
    falling = motion == 5
    g = torch.where(falling, 0.25 + 0.15 * u[..., 6], torch.zeros_like(r))
    e = torch.where(falling, 0.4 + 0.3 * u[..., 7], torch.zeros_like(r))
    return start, vel, g, e


def _pick(valid: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """(N, M) valid, (N, M) badness -> (N,) index of the first valid candidate, else the least bad."""
    first = valid.float().argmax(-1)
    return torch.where(valid.any(-1), first, score.argmin(-1))


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (N, M, ...) at idx (N,) -> (N, ...)."""
    return x[torch.arange(x.shape[0], device=x.device), idx]


def _bounce_ok(path: torch.Tensor, motion: torch.Tensor, frames: int) -> torch.Tensor:
    q = bounce_margin(frames)
    rev = first_reversal(path)
    return (motion != 0) | ((rev >= q) & (rev <= frames - 1 - q))


def bounce_margin(frames: int) -> int:
    """A bouncing object first reflects on frames [q, T-1-q]: q = 4 from 17 frames, 2 at 9."""
    return min(4, max(2, frames // 4))


def _object_candidates(motion, size, u, geo):
    """(N,) ids, (N, M, 8) uniforms -> start, vel, g, e (N, M, ...) and paths (N, M, T, 2)."""
    m = motion[:, None].expand(u.shape[:2])
    r = radius_of(size)[:, None].expand(u.shape[:2])
    start, vel, g, e = _candidates(m, r, u, geo)
    return (start, vel, g, e), motion_path(m, start, vel, g, e, r, geo)


def _slot_ids(n: int, gen, device):
    """Per-slot attribute ids (N, K) and per-scene ids: colours distinct, K uniform draws each."""
    u = torch.rand(n, 12, generator=gen, device=device)
    c0 = _ids(u[:, 0], len(COLOURS))
    c1 = (c0 + 1 + _ids(u[:, 1], len(COLOURS) - 1)) % len(COLOURS)
    ids = {"colour": torch.stack([c0, c1], 1),
           "shape": _ids(u[:, 2:4], len(SHAPES)), "size": _ids(u[:, 4:6], len(SIZES)),
           "motion": _ids(u[:, 6:8], len(MOTIONS))}
    return ids, _ids(u[:, 8], len(BACKGROUNDS)), u[:, 9], u[:, 10]


def _pick_pair(path0, path1, ids, occlude, two, geo: Geometry):
    """Choose candidates (i0, i1) jointly over all M x M pairs: each path valid alone (bounce timing)
    and, for two objects, the pair in its relation; else the least bad pair. -> (N,), (N,)."""
    ok0 = _bounce_ok(path0, ids["motion"][:, 0, None], geo.frames)  # (N, M)
    ok1 = _bounce_ok(path1, ids["motion"][:, 1, None], geo.frames)
    r0, r1 = radius_of(ids["size"][:, 0]), radius_of(ids["size"][:, 1])
    over = overlap_frames(path0[:, :, None], r0[:, None, None], path1[:, None], r1[:, None, None])  # (N, M, M)
    hi_occ = max(3, geo.frames // 2)
    occ = occlude[:, None, None]
    pair_ok = torch.where(occ, (over >= 3) & (over <= hi_occ), over <= MAX_SEPARATE_OVERLAP) | ~two[:, None, None]
    alone = ok0[:, :, None] & ok1[:, None, :]
    miss = torch.where(occ, (over - 3).clamp(min=0) + (over - hi_occ).clamp(min=0), over).float()
    bad = (~alone).float() * 1e4 + (~pair_ok).float() * (1e3 + miss)
    m = path0.shape[1]
    flat = _pick((alone & pair_ok).flatten(1), bad.flatten(1))
    return flat // m, flat % m


def sample_scenes(n: int, gen: torch.Generator, geometry: Geometry = Geometry(), two_objects_prob: float = 0.4,
                  occlusion_prob: float = 0.5, device=None) -> Scenes:
    """N random scenes drawn from `gen` on `gen`'s device (a fixed number of draws per call)."""
    device = gen.device if device is None else torch.device(device)
    ids, background, u_two, u_occ = _slot_ids(n, gen, device)
    present = torch.stack([torch.ones(n, dtype=torch.bool, device=device), u_two < two_objects_prob], 1)
    occlude = u_occ < occlusion_prob
    u = torch.rand(n, K_SLOTS, CANDIDATES, 8, generator=gen, device=device)
    p0, path0 = _object_candidates(ids["motion"][:, 0], ids["size"][:, 0], u[:, 0], geometry)
    p1, path1 = _object_candidates(ids["motion"][:, 1], ids["size"][:, 1], u[:, 1], geometry)
    i0, i1 = _pick_pair(path0, path1, ids, occlude, present[:, 1], geometry)
    params = [torch.stack([_gather(a, i0), _gather(b, i1)], 1) for a, b in zip(p0, p1)]
    scenes = Scenes(geometry, background, present, ids["shape"], ids["colour"], ids["size"], ids["motion"], *params)
    return _clear_absent(scenes)


def _clear_absent(s: Scenes) -> Scenes:
    """Zero every id and parameter of empty slots, so equal scenes have equal tensors."""
    out = {}
    for k, v in s.tensors().items():
        if k in ("background", "present"):
            out[k] = v
            continue
        mask = s.present.view(*s.present.shape, *([1] * (v.dim() - 2)))
        out[k] = v * mask.to(v.dtype)
    return Scenes(s.geometry, **out)
