"""Conditioning modes for training the tiny models natively: random per-sample tasks, batched on the device.

One model learns every mode from its conditioning channels (vdrt's native layout, version 2):

    cond = [known * keep (3), keep (1), hint * has_hint (3), has_hint (1)]     (B, 8, F, H, W)

- `keep` (1 = this pixel of the output is given exactly, and the model must reproduce it);
- `hint` (a whole clip that guides the output without fixing it: the input video of v2v, or the
  low-resolution clip of upscale, nearest-upsampled to the output size). All zeros is t2v.

| mode | keep | hint | target |
| --- | --- | --- | --- |
| t2v | none | none | the caption's clip |
| i2v | frame 0 | none | |
| extend | frames 0..k-1, k in 1..T/2 | none | |
| continue | frames 0..k-1, k in 2..T/2 | none | from frame k every object moves anew (bouncing or along |
|          |                            |      | an axis, from where it is), captioned with the new motion |
| interpolate | first and last frames | none | |
| slowmo | every m-th frame (t % m == 0), m in {2, 4} | none | frame-rate x m of a T' = (T-1)/m + 1 clip |
| inpaint | all but one rectangle (8..40 units a side), every frame | none | |
| outpaint | a central box, borders 4..20 units | none | |
| grow | a band of 50..80% of the width (or height), left/centre/right | none | the canvas grown around a clip |
| remove | all but a per-frame box around one object (2-object clips) | none | the clip WITHOUT that object, |
|        |                                                        |      | captioned without it |
| v2v | none | the same motions with other colours / shapes / background | the caption's attributes |
| upscale | none | the clip rendered at half size, upsampled x2 | (geometries whose sides are multiples of 16) |

Modes that need what a sample lacks fall back (remove on one object -> inpaint, upscale at an odd
size -> t2v). Every sample draws the same number of uniforms, so the random stream does not depend
on the modes. Alphabet: B batch, T frames, H, W pixels.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from vdrt.export.tiny.data import raster
from vdrt.export.tiny.data.captions import caption_ids
from vdrt.export.tiny.data.world import BACKGROUNDS, COLOURS, SHAPES, Geometry, Scenes, trajectories

MODES = ("t2v", "i2v", "extend", "interpolate", "slowmo", "inpaint", "outpaint", "grow", "remove", "v2v",
         "upscale", "continue")
MODE_PROBS = (0.20, 0.08, 0.12, 0.06, 0.08, 0.08, 0.06, 0.05, 0.07, 0.07, 0.08, 0.05)
COND_CHANNELS = 8
N_UNIFORMS = 20


@dataclasses.dataclass
class Batch:
    """One training batch: target clips, their conditioning, caption ids, and the mode of each sample."""

    x0: torch.Tensor  # (B, 3, T, H, W) float in [-1, 1]
    cond: torch.Tensor  # (B, 8, T, H, W)
    ids: torch.Tensor  # (B, L) caption token ids
    mode: torch.Tensor  # (B,) index into MODES


def native_cond(known, keep, hint=None, has_hint=None) -> torch.Tensor:
    """(B, 3, T, H, W), (B, 1, T, H, W)[, hint (B, 3, ...), has_hint (B, 1, ...)] -> (B, 8, T, H, W)."""
    if hint is None:
        hint, has_hint = torch.zeros_like(known), torch.zeros_like(keep)
    return torch.cat([known * keep, keep, hint * has_hint, has_hint], dim=1)


def pick_modes(u: torch.Tensor, probs=MODE_PROBS) -> torch.Tensor:
    """(B,) uniforms -> (B,) mode ids drawn with `probs`."""
    cum = torch.tensor(probs, dtype=torch.float32, device=u.device).cumsum(0)
    return torch.searchsorted(cum / cum[-1], u.contiguous(), right=True).clamp(max=len(probs) - 1)


def _is(mode: torch.Tensor, name: str) -> torch.Tensor:
    return mode == MODES.index(name)


def can_upscale(geo: Geometry) -> bool:
    """Upscale trains where the half-size clip is at least 32 px and a multiple of 8 a side."""
    return geo.height % 16 == 0 and geo.width % 16 == 0 and min(geo.height, geo.width) >= 64


def fallback(mode: torch.Tensor, scenes: Scenes) -> torch.Tensor:
    """Replace modes a sample cannot do: remove needs two objects, upscale an even half size."""
    mode = torch.where(_is(mode, "remove") & ~scenes.present[:, 1], MODES.index("inpaint"), mode)
    if not can_upscale(scenes.geometry):
        mode = torch.where(_is(mode, "upscale"), MODES.index("t2v"), mode)
    return mode


# ---------------------------------------------------------------- keep masks


def frame_keep(mode: torch.Tensor, u: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) modes, (B, 2) uniforms -> (B, T) bool frames given whole."""
    t = torch.arange(frames, device=mode.device)[None]
    k = 1 + (u[:, 0] * max(1, frames // 2)).long()  # 1..T/2
    m = torch.where(u[:, 1] < 0.5, 2, 4)[:, None]
    kc = switch_frame(u[:, 0], frames)  # a continuation shows at least 2 frames of the old motion
    return ((_is(mode, "i2v")[:, None] & (t == 0)) | (_is(mode, "extend")[:, None] & (t < k[:, None]))
            | (_is(mode, "continue")[:, None] & (t < kc[:, None]))
            | (_is(mode, "interpolate")[:, None] & ((t == 0) | (t == frames - 1)))
            | (_is(mode, "slowmo")[:, None] & (t % m == 0)))


def _grid(geo: Geometry, device):
    return (torch.arange(geo.height, device=device)[None, :, None].float(),
            torch.arange(geo.width, device=device)[None, None, :].float())


def rect_keep(mode: torch.Tensor, u: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(B,) modes, (B, 5) uniforms -> (B, H, W) bool: inpaint (outside a hole), outpaint (inside a box),
    grow (inside a band)."""
    s, (h, w) = geo.scale, (geo.height, geo.width)
    yy, xx = _grid(geo, mode.device)
    c = lambda v: v[:, None, None]  # noqa: E731  (B,) -> (B, 1, 1)
    rh, rw = s * (8 + 32 * u[:, 0]), s * (8 + 32 * u[:, 1])
    y0, x0 = (h - rh) * u[:, 2], (w - rw) * u[:, 3]
    hole = (yy >= c(y0)) & (yy < c(y0 + rh)) & (xx >= c(x0)) & (xx < c(x0 + rw))
    b = s * (4 + 16 * u[:, :4])  # (B, 4) borders top, bottom, left, right
    box = (yy >= c(b[:, 0])) & (yy < h - c(b[:, 1])) & (xx >= c(b[:, 2])) & (xx < w - c(b[:, 3]))
    return (c(_is(mode, "inpaint")) & ~hole) | (c(_is(mode, "outpaint")) & box) | (c(_is(mode, "grow"))
                                                                                   & _band(u, geo, yy, xx))


def _band(u: torch.Tensor, geo: Geometry, yy, xx) -> torch.Tensor:
    """(B, H, W) bool: a band across the longer axis (width when square) of 50..80% of it,
    aligned left/centre/right (top/centre/bottom) by u[:, 4]."""
    wide = geo.width >= geo.height
    side, coord = (geo.width, xx) if wide else (geo.height, yy)
    size = (0.5 + 0.3 * u[:, 1]) * side
    align = torch.div(u[:, 4] * 3, 1, rounding_mode="floor").clamp(max=2) / 2  # 0, .5, 1
    start = torch.round((side - size) * align)
    return (coord >= start[:, None, None]) & (coord < (start + size)[:, None, None])


def remove_hole(scenes: Scenes, which: torch.Tensor, margin_px: int = 2) -> torch.Tensor:
    """(B, T, H, W) bool: the per-frame box (grown by margin_px) of object `which` (B,) of each scene."""
    geo = scenes.geometry
    pos = geo.to_pixels(trajectories(scenes))  # (B, K, T, 2)
    b = torch.arange(len(scenes), device=pos.device)
    c = torch.round(pos[b, which])  # (B, T, 2)
    r = torch.round(scenes.radius()[b, which] * geo.scale)[:, None] + margin_px  # (B, 1)
    yy, xx = _grid(geo, pos.device)
    cx, cy = c[..., 0, None, None], c[..., 1, None, None]  # (B, T, 1, 1)
    rr = r[..., None, None]
    return ((xx[:, None] - cx).abs() <= rr) & ((yy[:, None] - cy).abs() <= rr)


# ---------------------------------------------------------------- target and hint scenes


def drop_object(scenes: Scenes, rows: torch.Tensor, which: torch.Tensor) -> Scenes:
    """The scenes with object `which` (B,) removed where rows (B,) is True, the other slot moved to slot 0."""
    out = {}
    for k, v in scenes.tensors().items():
        if k == "background":
            out[k] = v
            continue
        shape = (-1, *([1] * (v.dim() - 1)))
        keep_other = torch.where(which.view(shape) == 0, v[:, 1:2], v[:, 0:1])  # the object that stays
        dropped = torch.cat([keep_other, torch.zeros_like(v[:, 1:2])], 1)
        out[k] = torch.where(rows.view(shape), dropped, v)
    return Scenes(scenes.geometry, **out)


def restyle(scenes: Scenes, u: torch.Tensor) -> Scenes:
    """v2v inputs: the same motions with every colour shifted (still distinct), and, each with
    probability 1/2, other shapes and another background. u: (B, 3) uniforms."""
    n_col, n_shape, n_bg = len(COLOURS), len(SHAPES), len(BACKGROUNDS)
    shift = 1 + (u[:, 0] * (n_col - 1)).long().clamp(max=n_col - 2)  # 1..5: both colours move alike
    colour = (scenes.colour + shift[:, None]) % n_col
    shape = torch.where(u[:, 1:2] < 0.5, (scenes.shape + 1 + (u[:, 1:2] * 4).long() % 2) % n_shape, scenes.shape)
    bg = torch.where(u[:, 2] < 0.5, (scenes.background + 1 + (u[:, 2] * 6).long() % 3) % n_bg, scenes.background)
    return dataclasses.replace(scenes, colour=colour, shape=shape, background=bg)


def switch_frame(u: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) the frame a continuation starts at: the extend k of frame_keep, at least 2 (motion seen)."""
    return (1 + (u * max(1, frames // 2)).long()).clamp(min=2, max=frames - 1)


def new_motions(scenes: Scenes, k: torch.Tensor, u: torch.Tensor) -> Scenes:
    """Scenes whose objects, from frame k (B,), move anew from where they are at k; u: (B, K, 4) uniforms.

    Half bounce (2.5..4 units/frame, 30..60 degrees off the axes), half move along an axis towards the
    farther wall, travelling 50..90% of that room by the last frame. Falling is not a continuation
    (its start would lie before frame k). Positions before k follow the old scene.
    """
    geo, r = scenes.geometry, scenes.radius()  # (B, K)
    pos = trajectories(scenes)  # (B, K, T, 2)
    p = pos[torch.arange(len(scenes), device=pos.device), :, k]  # (B, K, 2)
    ex, ey = geo.extent
    hi = torch.stack([ex - r, ey - r], -1)
    bounce = u[..., 0] < 0.5
    speed, angle = 2.5 + 1.5 * u[..., 1], torch.deg2rad((u[..., 2] * 4).floor() * 90 + 30 + 30 * u[..., 3])
    b_vel = torch.stack([speed * torch.cos(angle), speed * torch.sin(angle)], -1)
    along_x = u[..., 2] < 0.5
    room_lo, room_hi = p - r[..., None], hi - p  # (B, K, 2)
    pos_dir = room_hi >= room_lo
    room = torch.where(pos_dir, room_hi, room_lo)
    left = (geo.frames - 1 - k).clamp(min=1).float()[:, None]
    a_speed = torch.where(along_x, room[..., 0], room[..., 1]) * (0.5 + 0.4 * u[..., 1]) / left
    sign = torch.where(torch.where(along_x, pos_dir[..., 0], pos_dir[..., 1]), 1.0, -1.0)
    a_vel = torch.stack([torch.where(along_x, sign * a_speed, 0.0), torch.where(along_x, 0.0, sign * a_speed)], -1)
    axis_id = torch.where(along_x, torch.where(sign > 0, 2, 1), torch.where(sign > 0, 4, 3))
    vel = torch.where(bounce[..., None], b_vel, a_vel)
    start = p - vel * k[:, None, None].float()
    motion = torch.where(bounce, 0, axis_id) * scenes.present
    zeros = torch.zeros_like(scenes.gravity)
    return dataclasses.replace(scenes, motion=motion, start=start * scenes.present[..., None], velocity=vel
                               * scenes.present[..., None], gravity=zeros, restitution=zeros)


def upscale_hint(scenes: Scenes) -> torch.Tensor:
    """(B, 3, T, H, W): the scenes rendered at half size, nearest-upsampled x2 (what a user's low-res clip gives)."""
    g = scenes.geometry
    half = dataclasses.replace(scenes, geometry=Geometry(g.frames, g.height // 2, g.width // 2))
    x = raster.to_model(raster.render(half))  # (B, 3, T, H/2, W/2)
    return F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")


# ---------------------------------------------------------------- the batch


def make_batch(scenes: Scenes, gen: torch.Generator, probs=MODE_PROBS, max_len: int = 16) -> Batch:
    """Targets, conditioning and captions for random modes over `scenes` (all on their device)."""
    n, geo, dev = len(scenes), scenes.geometry, scenes.device
    u = torch.rand(n, N_UNIFORMS, generator=gen, device=dev)
    mode = fallback(pick_modes(u[:, 0], probs), scenes)
    which = (u[:, 1] < 0.5).long()
    target = drop_object(scenes, _is(mode, "remove"), which)
    x0 = raster.to_model(raster.render(target))  # (B, 3, T, H, W)
    x0, target = _continuations(target, x0, _is(mode, "continue"), u[:, 2], u[:, 12:20])
    keep = frame_keep(mode, u[:, 2:4], geo.frames)[:, :, None, None] | rect_keep(mode, u[:, 4:9], geo)[:, None]
    keep = keep | (_is(mode, "remove")[:, None, None, None] & ~remove_hole(scenes, which))  # (B, T, H, W)
    hint, has_hint = _hints(target, mode, u[:, 9:12])
    cond = native_cond(x0, keep[:, None].float(), hint, has_hint)
    return Batch(x0, cond, caption_ids(target, gen, max_len), mode)


def _continuations(target: Scenes, x0: torch.Tensor, rows: torch.Tensor, u_k: torch.Tensor, u: torch.Tensor):
    """For `rows`: frames before k from the old scene, from k the new motions; the caption's scene is the new one."""
    k = switch_frame(u_k, target.geometry.frames)
    after = new_motions(target, k, u.reshape(-1, 2, 4))
    t = torch.arange(target.geometry.frames, device=x0.device)
    late = rows[:, None] & (t[None] >= k[:, None])  # (B, T)
    x0 = torch.where(late[:, None, :, None, None], raster.to_model(raster.render(after)), x0)
    scenes = Scenes(target.geometry, **{name: torch.where(rows.view(-1, *([1] * (v.dim() - 1))), after.tensors()[name],
                                                          v) for name, v in target.tensors().items()})
    return x0, scenes


def _hints(target: Scenes, mode: torch.Tensor, u: torch.Tensor):
    """hint (B, 3, T, H, W) and has_hint (B, 1, T, H, W) for the v2v and upscale rows."""
    v2v, up = _is(mode, "v2v"), _is(mode, "upscale")
    hint = raster.to_model(raster.render(restyle(target, u)))
    if can_upscale(target.geometry):  # no data-dependent branch: no device sync
        hint = torch.where(up.view(-1, 1, 1, 1, 1), upscale_hint(target), hint)
    has = (v2v | up).float().view(-1, 1, 1, 1, 1).expand(-1, 1, *hint.shape[2:])
    return hint, has
