"""Trivial generators the oracle prints beside every model: what a number is worth.

Each is a `generate_fn` over clips 0..N-1 of a split (the oracle's test clips, in order), built
from the renderer's own scenes, so a baseline knows exactly what it is allowed to know:
- `truth`: the true clips (the metric ceilings);
- `repeat_last`: every generated frame repeats the last known one (t2v: a blank grey clip);
- `constant_velocity`: each object continues at the velocity of its last two known positions;
- `constant_velocity_bounce`: velocity fitted to all known positions, reflecting at the walls;
- `erased`: the background only after the known frames (the objects vanish);
- `teleport`: a disc of each object's colour and size at a random spot on every generated frame;
- `blend` (interpolate): a crossfade from the first to the last frame;
- `linear` (interpolate): each object moving in a straight line from its first to its last position.
Alphabet: N clips, K objects, T frames.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vdrt.errors import ConfigError
from vdrt.export.tiny.data import raster
from vdrt.export.tiny.data.procedural import split_scenes
from vdrt.export.tiny.data.world import Geometry, fold, trajectories

KINDS = ("truth", "repeat_last", "constant_velocity", "constant_velocity_bounce", "erased", "teleport", "blend",
         "linear")


def _render_at(scenes, pos: torch.Tensor) -> np.ndarray:
    """Render the scenes' objects at given world positions (N, K, T, 2): uint8 (N, T, H, W, 3)."""
    return raster.paint(scenes, raster.masks(scenes, pos)).numpy()


def _extrapolate(pos: torch.Tensor, k: int, bounce: bool, scenes) -> torch.Tensor:
    """Positions after the first k frames from the known ones: last-two velocity, or a fit with walls."""
    t = torch.arange(pos.shape[2], dtype=torch.float32)
    if not bounce:
        v = pos[:, :, k - 1] - pos[:, :, k - 2]
        return pos[:, :, k - 1, None] + v[:, :, None] * (t - (k - 1))[:, None]
    tk = t[:k] - t[:k].mean()
    v = (pos[:, :, :k] * tk[:, None]).sum(2) / (tk * tk).sum()  # least-squares slope (N, K, 2)
    a = pos[:, :, :k].mean(2) - v * t[:k].mean()
    free = a[:, :, None] + v[:, :, None] * t[:, None]
    r = scenes.radius()[..., None, None]
    ex, ey = scenes.geometry.extent
    hi = torch.tensor([ex, ey]) - r
    return fold(free, r, hi)


def _teleport(scenes, frames: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    r = scenes.radius()[..., None, None]
    ex, ey = scenes.geometry.extent
    u = torch.rand(len(scenes), scenes.present.shape[1], frames, 2, generator=gen)
    return r + u * (torch.tensor([ex, ey]) - 2 * r)


class Baseline:
    """`generate_fn` of one baseline `kind` over clips 0..N-1 of `split` at `geometry`."""

    def __init__(self, kind: str, n_clips: int, geometry: Geometry = Geometry(), split: str = "test"):
        if kind not in KINDS:
            raise ConfigError(f"unknown baseline {kind!r}; use one of {KINDS}")
        self.kind, self.geometry = kind, geometry
        self.scenes, _ = split_scenes(split, 0, n_clips, geometry)
        self.pos = trajectories(self.scenes)
        self.truth = raster.render(self.scenes).numpy()

    def __call__(self, prompts, mode, video=None, known_frames=None, seed: int = 0, size=None) -> np.ndarray:
        n = len(prompts)
        truth = self.truth[:n]
        if self.kind == "truth":
            return truth.copy()
        if mode == "t2v":
            return np.full_like(truth, 128)
        known = {"interpolate": [0, truth.shape[1] - 1]}.get(mode, list(range(known_frames or 1)))
        out = self._generate(n, mode, known, seed)
        out[:, known] = truth[:, known]
        return out

    def _generate(self, n: int, mode: str, known: list[int], seed: int) -> np.ndarray:
        scenes = self.scenes.map(lambda v: v[:n])
        pos, truth, k, kind = self.pos[:n], self.truth[:n], len(known), self.kind
        if kind == "repeat_last":
            return np.repeat(truth[:, known[-1] if mode != "interpolate" else 0, None], truth.shape[1], axis=1)
        if kind == "blend":
            w = np.linspace(0, 1, truth.shape[1])[None, :, None, None, None]
            return np.rint((1 - w) * truth[:, :1] + w * truth[:, -1:]).astype(np.uint8)
        if kind == "linear":
            w = torch.linspace(0, 1, truth.shape[1])[:, None]
            return _render_at(scenes, (1 - w) * pos[:, :, :1] + w * pos[:, :, -1:])
        if kind in ("constant_velocity", "constant_velocity_bounce"):
            if k < 2:
                raise ConfigError(f"{kind} needs at least 2 known frames, got {k}")
            return _render_at(scenes, _extrapolate(pos, k, kind.endswith("bounce"), scenes))
        if kind == "erased":
            return _render_at(dataclasses.replace(scenes, present=torch.zeros_like(scenes.present)), pos)
        circles = dataclasses.replace(scenes, shape=torch.zeros_like(scenes.shape))
        return _render_at(circles, _teleport(scenes, truth.shape[1], seed))
