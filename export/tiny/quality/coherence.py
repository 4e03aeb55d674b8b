"""Temporal coherence of a generated clip from the analytic detector: does each object stay one object?

Per clip (T, H, W, 3) uint8, over the detector's objects (one per palette colour, see `detector`),
with thresholds in world units (scaled by the clip's px per unit, `detector.scale_of`):
- count_stable: the number of objects present (area >= MIN_AREA) equals its most common value
  on at least 90% of frames (the world hides an object behind another only briefly);
- jumps: centroid steps between consecutive present frames longer than TELEPORT_UNITS (12; the
  world's fastest object moves ~7 units a frame); teleport_free: no jump;
- area_stable: on at least 80% of its present frames an object's area is within 0.5x..1.5x of its
  median (occlusion shrinks it briefly; a smear or a split does not stay in range);
- persistent: every object present on at least 85% of the frames;
- split_free: no object's mask fills less than 35% of its bounding box on two frames or more (a
  blob that splits into two spreads its box; a triangle fills 50%, a disc 79%);
- coherent: all of the above, with at least one object.
"""
from __future__ import annotations

import numpy as np

from vdrt.export.tiny.quality.detector import MIN_AREA, colour_masks, scale_of

TELEPORT_UNITS = 12.0
COUNT_SHARE, AREA_SHARE, PRESENT_SHARE, MIN_FILL = 0.9, 0.8, 0.85, 0.35
KEYS = ("count_stable", "teleport_free", "area_stable", "persistent", "split_free", "coherent")


def _fill(m: np.ndarray) -> np.ndarray:
    """(T, H, W) masks -> (T,) area / bounding-box area (1 where empty)."""
    rows, cols = m.any(2), m.any(1)
    h = np.where(rows.any(1), rows.shape[1] - rows[:, ::-1].argmax(1) - rows.argmax(1), 1)
    w = np.where(cols.any(1), cols.shape[1] - cols[:, ::-1].argmax(1) - cols.argmax(1), 1)
    area = m.sum(axis=(1, 2))
    return np.where(area > 0, area / (h * w), 1.0)


def _object(m: np.ndarray, s: float) -> dict:
    area = m.sum(axis=(1, 2))
    present = area >= MIN_AREA * s * s
    yy, xx = np.arange(m.shape[1]), np.arange(m.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.stack([m.sum(1) @ xx, m.sum(2) @ yy], 1) / area[:, None]  # (T, 2)
    idx = np.nonzero(present)[0]
    steps = np.linalg.norm(np.diff(c[idx], axis=0), axis=1) / np.maximum(np.diff(idx), 1)
    med = np.median(area[present]) if present.any() else 0
    in_range = (area[present] >= 0.5 * med) & (area[present] <= 1.5 * med)
    return {"present": present, "jumps": int((steps > TELEPORT_UNITS * s).sum()),
            "area_stable": bool(in_range.mean() >= AREA_SHARE) if present.any() else False,
            "persistent": bool(present.mean() >= PRESENT_SHARE),
            "split_free": bool((_fill(m)[present] < MIN_FILL).sum() < 2)}


def coherence(frames: np.ndarray) -> dict:
    """The clip's coherence flags (see the module doc), `jumps` and `objects` (the usual count)."""
    s = scale_of(frames)
    objs = [_object(m, s) for m in colour_masks(frames).values()]
    objs = [o for o in objs if o["present"].any()]
    if not objs:
        return {**dict.fromkeys(KEYS, False), "jumps": 0, "objects": 0}
    count = np.stack([o["present"] for o in objs]).sum(0)  # (T,)
    mode = int(np.bincount(count).argmax())
    out = {"count_stable": bool((count == mode).mean() >= COUNT_SHARE),
           "teleport_free": all(o["jumps"] == 0 for o in objs),
           "area_stable": all(o["area_stable"] for o in objs), "persistent": all(o["persistent"] for o in objs),
           "split_free": all(o["split_free"] for o in objs)}
    out["coherent"] = all(out.values()) and mode > 0
    return {**out, "jumps": sum(o["jumps"] for o in objs), "objects": mode}
