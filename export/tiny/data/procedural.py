"""Procedural clips one at a time, and the fixed train / val / test splits, over the batched world.

    frames, text, spec = dataset("test", 7)                     # np.uint8 (T, H, W, 3), caption, ClipSpec
    clips, texts = batch("test", 0, 256, Geometry(33, 64, 96))   # np.uint8 (N, T, H, W, 3), captions
    frames, truth = render_with_truth(spec)                      # numpy ground truth per object

The world itself (objects, motions, occlusion, scales) is described in `world`, rendering in
`render`. A `ClipSpec` is one scene written out by hand or read back from a batch; it converts to
and from `world.Scenes`, so a hand-written clip and a sampled one render through the same code.

Splits: clip i of a split is clip i % CHUNK of chunk i // CHUNK, and chunk c is drawn on the CPU
from `torch.Generator().manual_seed(SPLIT_OFFSETS[split] + c)` for the given geometry. So every
clip is fixed by (split, index, geometry) whatever batch it is asked for in, and the three splits
draw from disjoint seeds below 2^32 (torch's CPU generator keeps only 32 bits of a seed), which
bounds a split to MAX_CLIPS = 2^30 clips. (Chunks of other geometries are different scenes.)
Coordinates are (x, y) = (column, row), y pointing down.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from vdrt.errors import ConfigError
from vdrt.export.tiny.data import raster as R
from vdrt.export.tiny.data.world import (
    BACKGROUNDS, COLOURS, K_SLOTS, MOTIONS, SHAPES, SIZES, Geometry, Scenes, motion_path, sample_scenes,
)

__all__ = ["BACKGROUNDS", "COLOURS", "MOTIONS", "SHAPES", "SIZES", "Geometry", "ObjectSpec", "ClipSpec",
           "ClipTruth", "render", "render_with_truth", "dataset", "dataset_spec", "batch", "split_scenes",
           "to_float", "to_uint8", "trajectory"]

SPLIT_OFFSETS = {"train": 0, "val": 1 << 28, "test": 2 << 28}
CHUNK = 64
MAX_CLIPS = CHUNK << 24  # chunk seeds of one split stay below the next split's offset
to_float, to_uint8 = R.to_float, R.to_uint8


@dataclass(frozen=True)
class ObjectSpec:
    """One object: what it is and how it moves. Positions are the mask centre, in world units."""

    shape: str
    colour: str
    size: str
    motion: str
    start: tuple[float, float]  # (x, y) at frame 0
    velocity: tuple[float, float]  # (vx, vy) units/frame at frame 0
    gravity: float = 0.0  # units/frame^2, `falling` only
    restitution: float = 0.0  # floor bounce factor, `falling` only

    @property
    def radius(self) -> int:
        return SIZES[self.size]


@dataclass(frozen=True)
class ClipSpec:
    """A whole clip; objects later in the tuple are drawn on top (at most K_SLOTS objects)."""

    objects: tuple[ObjectSpec, ...]
    background: str
    geometry: Geometry = field(default_factory=Geometry)


@dataclass(frozen=True)
class ClipTruth:
    """Ground truth per object (K) and frame (T) of one clip, in pixels; see render.Truth."""

    centroids: np.ndarray  # (K, T, 2) float (x, y) of the visible pixels; NaN where hidden
    areas: np.ndarray  # (K, T) int64 visible pixel counts
    positions: np.ndarray  # (K, T, 2) float unrounded mask centres
    full_areas: np.ndarray  # (K, T) whole-shape pixel counts
    boxes: np.ndarray  # (K, T, 4) visible boxes, -1 where hidden
    amodal_boxes: np.ndarray  # (K, T, 4) whole-shape boxes


def _index(names, value: str, what: str) -> int:
    names = tuple(names)
    if value not in names:
        raise ConfigError(f"unknown {what} {value!r}; use one of {names}")
    return names.index(value)


def _slot(o: ObjectSpec | None) -> list:
    if o is None:
        return [False, 0, 0, 0, 0, (0.0, 0.0), (0.0, 0.0), 0.0, 0.0]
    ids = [_index(SHAPES, o.shape, "shape"), _index(COLOURS, o.colour, "colour"), _index(SIZES, o.size, "size"),
           _index(MOTIONS, o.motion, "motion")]
    return [True, *ids, o.start, o.velocity, o.gravity, o.restitution]


def scenes_from_specs(specs: list[ClipSpec]) -> Scenes:
    """Hand-written specs (one geometry) -> Scenes on the CPU."""
    geos = {s.geometry for s in specs}
    if len(geos) != 1 or any(len(s.objects) > K_SLOTS for s in specs):
        raise ConfigError(f"specs need one geometry and at most {K_SLOTS} objects each")
    rows = [[_slot(s.objects[k] if k < len(s.objects) else None) for k in range(K_SLOTS)] for s in specs]
    col = lambda j, dt: torch.tensor([[r[j] for r in row] for row in rows], dtype=dt)  # noqa: E731
    bg = torch.tensor([_index(BACKGROUNDS, s.background, "background") for s in specs])
    return Scenes(geos.pop(), bg, col(0, torch.bool), col(1, torch.long), col(2, torch.long), col(3, torch.long),
                  col(4, torch.long), col(5, torch.float32), col(6, torch.float32), col(7, torch.float32),
                  col(8, torch.float32))


def specs_from_scenes(s: Scenes) -> list[ClipSpec]:
    """Scenes -> ClipSpecs; float32 values convert exactly, so a spec re-renders the same pixels."""
    t = {k: v.cpu().tolist() for k, v in s.tensors().items()}
    out = []
    for i in range(len(s)):
        objs = tuple(ObjectSpec(SHAPES[t["shape"][i][k]], tuple(COLOURS)[t["colour"][i][k]],
                                tuple(SIZES)[t["size"][i][k]], MOTIONS[t["motion"][i][k]],
                                tuple(t["start"][i][k]), tuple(t["velocity"][i][k]), t["gravity"][i][k],
                                t["restitution"][i][k])
                     for k in range(K_SLOTS) if t["present"][i][k])
        out.append(ClipSpec(objs, tuple(BACKGROUNDS)[t["background"][i]], s.geometry))
    return out


def trajectory(obj: ObjectSpec, geometry: Geometry = Geometry()) -> np.ndarray:
    """Mask-centre positions over the clip: float (T, 2) as (x, y) world units."""
    r = torch.tensor(float(obj.radius))
    path = motion_path(torch.tensor(_index(MOTIONS, obj.motion, "motion")), torch.tensor(obj.start),
                       torch.tensor(obj.velocity), torch.tensor(obj.gravity), torch.tensor(obj.restitution), r,
                       geometry)
    return path.double().numpy()


def render(spec: ClipSpec) -> np.ndarray:
    """One clip: np.uint8 (T, H, W, 3)."""
    return R.render(scenes_from_specs([spec]))[0].numpy()


def render_with_truth(spec: ClipSpec) -> tuple[np.ndarray, ClipTruth]:
    frames, truth = R.render(scenes_from_specs([spec]), with_truth=True)
    return frames[0].numpy(), ClipTruth(**truth.clip(0))


# ---------------------------------------------------------------- splits


def check_split(split: str, start: int, n: int) -> None:
    if split not in SPLIT_OFFSETS:
        raise ConfigError(f"unknown split {split!r}; use one of {tuple(SPLIT_OFFSETS)}")
    if start < 0 or n < 0 or start + n > MAX_CLIPS:
        raise ConfigError(f"clip index range [{start}, {start + n}) is outside [0, 2**30)")


@lru_cache(maxsize=16)
def _chunk(split: str, c: int, geometry: Geometry, two_objects_prob: float):
    """Chunk c of a split: (Scenes, caption ids) on the CPU; cached, so callers must not modify them in place."""
    from vdrt.export.tiny.data.captions import caption_ids

    gen = torch.Generator().manual_seed(SPLIT_OFFSETS[split] + c)
    scenes = sample_scenes(CHUNK, gen, geometry, two_objects_prob)
    return scenes, caption_ids(scenes, gen)


def split_scenes(split: str, start: int, n: int, geometry: Geometry = Geometry(),
                 two_objects_prob: float = 0.4) -> tuple[Scenes, torch.Tensor]:
    """Clips start..start+n-1 of `split` as (Scenes, caption ids (N, 16)) on the CPU."""
    check_split(split, start, n)
    first, last = start // CHUNK, (start + max(n, 1) - 1) // CHUNK
    parts = [_chunk(split, c, geometry, two_objects_prob) for c in range(first, last + 1)]
    scenes = Scenes.cat([p[0] for p in parts])
    ids = torch.cat([p[1] for p in parts])
    sel = slice(start - first * CHUNK, start - first * CHUNK + n)
    return scenes.map(lambda v: v[sel]), ids[sel]


def batch(split: str, start: int, n: int, geometry: Geometry = Geometry(),
          two_objects_prob: float = 0.4) -> tuple[np.ndarray, list[str]]:
    """Clips start..start+n-1 of `split`: (np.uint8 (N, T, H, W, 3), captions)."""
    from vdrt.export.tiny.data.captions import decode

    scenes, ids = split_scenes(split, start, n, geometry, two_objects_prob)
    return R.render(scenes).numpy(), decode(ids)


def dataset_spec(split: str, index: int, geometry: Geometry = Geometry(),
                 two_objects_prob: float = 0.4) -> tuple[ClipSpec, str]:
    """The spec and caption of clip `index` of `split`, without rendering."""
    from vdrt.export.tiny.data.captions import decode

    scenes, ids = split_scenes(split, index, 1, geometry, two_objects_prob)
    return specs_from_scenes(scenes)[0], decode(ids)[0]


def dataset(split: str, index: int, geometry: Geometry = Geometry(),
            two_objects_prob: float = 0.4) -> tuple[np.ndarray, str, ClipSpec]:
    """Clip `index` of `split`: (frames uint8 (T, H, W, 3), caption, spec), deterministic."""
    spec, text = dataset_spec(split, index, geometry, two_objects_prob)
    return render(spec), text, spec
