"""Batched rendering of `world.Scenes` with exact per-object, per-frame ground truth, on any device.

    frames = render(scenes)                       # uint8 (N, T, H, W, 3)
    frames, truth = render(scenes, with_truth=True)
    x = to_model(frames)                          # float (N, 3, T, H, W) in [-1, 1]

Masks have no anti-aliasing: every pixel is exactly a palette colour. A shape of radius r units
at scale s covers, around its centre (`Geometry.to_pixels`) rounded to the pixel grid, the
pixels with integer offsets (dx, dy) and R = round(r s): circle dx^2 + dy^2 <= (R + 0.5)^2,
square |dx|, |dy| <= R, triangle (apex up) -R <= dy <= R and |dx| <= floor((dy + R) / 2). Slot 1 is painted over slot 0.
Everything is elementwise tensor work: no per-clip Python.
Alphabet: N scenes, K slots, T frames, H, W pixels.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vdrt.export.tiny.data.world import BACKGROUNDS, COLOURS, K_SLOTS, Scenes, trajectories


@dataclasses.dataclass
class Truth:
    """Ground truth of N clips; hidden or absent objects have area 0, NaN centroids and boxes of -1."""

    present: torch.Tensor  # (N, K) bool: the slot holds an object
    positions: torch.Tensor  # (N, K, T, 2) float32 unrounded mask centres in pixels (x, y)
    centroids: torch.Tensor  # (N, K, T, 2) float32 centroid of the VISIBLE pixels
    areas: torch.Tensor  # (N, K, T) long visible pixel counts (occlusion applied)
    full_areas: torch.Tensor  # (N, K, T) long pixel counts of the whole (amodal) shape
    boxes: torch.Tensor  # (N, K, T, 4) long visible box x0, y0, x1, y1 (inclusive)
    amodal_boxes: torch.Tensor  # (N, K, T, 4) long box of the whole shape, hidden parts included

    def clip(self, i: int) -> dict[str, np.ndarray]:
        """Clip i's truth as numpy arrays over its present objects."""
        keep = self.present[i].cpu().numpy()
        return {f.name: getattr(self, f.name)[i].cpu().numpy()[keep] for f in dataclasses.fields(self)
                if f.name != "present"}


def _palette(table: dict, device) -> torch.Tensor:
    return torch.tensor(list(table.values()), dtype=torch.uint8, device=device)


def masks(scenes: Scenes, pos: torch.Tensor | None = None) -> torch.Tensor:
    """Whole-shape masks (N, K, T, H, W) bool, False for absent slots."""
    geo = scenes.geometry
    pos = trajectories(scenes) if pos is None else pos
    c = torch.round(geo.to_pixels(pos)).to(torch.int32)  # (N, K, T, 2)
    big_r = torch.round(scenes.radius() * geo.scale).to(torch.int32)[..., None, None, None]  # (N, K, 1, 1, 1)
    xx = torch.arange(geo.width, dtype=torch.int32, device=pos.device)
    yy = torch.arange(geo.height, dtype=torch.int32, device=pos.device)
    dx = xx - c[..., 0, None, None]  # (N, K, T, 1, W)
    dy = yy[:, None] - c[..., 1, None, None]  # (N, K, T, H, 1)
    rows = (dy >= -big_r) & (dy <= big_r)
    square = rows & (dx.abs() <= big_r)
    circle = (dx * dx + dy * dy) * 4 <= (2 * big_r + 1) ** 2
    triangle = rows & (dx.abs() <= torch.div(dy + big_r, 2, rounding_mode="floor"))
    shape = scenes.shape[..., None, None, None]
    out = torch.where(shape == 0, circle, torch.where(shape == 1, square, triangle))
    return out & scenes.present[..., None, None, None]


def visible(full: torch.Tensor) -> torch.Tensor:
    """(N, K, T, H, W) whole masks -> the pixels each slot shows (later slots paint over earlier ones)."""
    out, above = [], torch.zeros_like(full[:, 0])
    for k in reversed(range(full.shape[1])):
        out.append(full[:, k] & ~above)
        above = above | full[:, k]
    return torch.stack(out[::-1], 1)


def paint(scenes: Scenes, full: torch.Tensor) -> torch.Tensor:
    """uint8 (N, T, H, W, 3): the background, then each slot's colour over its whole mask, back to front."""
    n, (t, h, w) = len(scenes), scenes.geometry.shape
    bg = _palette(BACKGROUNDS, scenes.device)[scenes.background]  # (N, 3)
    frames = bg[:, None, None, None, :].expand(n, t, h, w, 3)
    colours = _palette(COLOURS, scenes.device)[scenes.colour]  # (N, K, 3)
    for k in range(K_SLOTS):
        frames = torch.where(full[:, k, ..., None], colours[:, k, None, None, None, :], frames)
    return frames.contiguous()


def _boxes(m: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (..., 4) long inclusive x0, y0, x1, y1; -1 where empty."""
    h, w = m.shape[-2:]
    cols, rows = m.any(-2), m.any(-1)  # (..., W), (..., H)
    xs = torch.arange(w, device=m.device)
    ys = torch.arange(h, device=m.device)
    box = torch.stack([torch.where(cols, xs, w).amin(-1), torch.where(rows, ys, h).amin(-1),
                       torch.where(cols, xs, -1).amax(-1), torch.where(rows, ys, -1).amax(-1)], -1)
    return torch.where(m.flatten(-2).any(-1)[..., None], box, torch.full_like(box, -1))


def truth_of(scenes: Scenes, full: torch.Tensor, pos: torch.Tensor) -> Truth:
    vis = visible(full)
    geo = scenes.geometry
    area = vis.sum((-2, -1))  # (N, K, T)
    xs = torch.arange(geo.width, device=vis.device, dtype=torch.float32)
    ys = torch.arange(geo.height, device=vis.device, dtype=torch.float32)
    cx = (vis.sum(-2).float() * xs).sum(-1) / area
    cy = (vis.sum(-1).float() * ys).sum(-1) / area
    return Truth(scenes.present, geo.to_pixels(pos), torch.stack([cx, cy], -1), area, full.sum((-2, -1)),
                 _boxes(vis), _boxes(full))


def render(scenes: Scenes, with_truth: bool = False):
    """uint8 frames (N, T, H, W, 3), and the Truth when asked."""
    pos = trajectories(scenes)
    full = masks(scenes, pos)
    frames = paint(scenes, full)
    return (frames, truth_of(scenes, full, pos)) if with_truth else frames


def to_model(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) -> float32 (..., 3, T, H, W) in [-1, 1]."""
    return torch.movedim(frames, -1, -4).float() / 127.5 - 1.0


def to_float(frames) -> np.ndarray:
    """numpy uint8 (..., T, H, W, 3) -> float32 (..., 3, T, H, W) in [-1, 1]."""
    x = np.asarray(frames).astype(np.float32) / 127.5 - 1.0
    return np.moveaxis(x, -1, -4)


def to_uint8(x) -> np.ndarray:
    """float (..., 3, T, H, W) in [-1, 1] (numpy or a CPU tensor) -> uint8 (..., T, H, W, 3)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float32), -4, -1)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
