"""An analytic detector for procedural clips: what objects are there, and how do they move?

No learning. For a clip (T, H, W, 3) uint8:

1. Background: the per-channel median of the border pixels of all frames.
2. Segmentation: each pixel takes the nearest object colour of the palette
   (`vdrt.export.tiny.data.procedural.COLOURS`) if it lies within MAX_COLOUR_DIST of it and nearer to it than
   to the background; then an opening by a 2x2 square removes specks and 1-px lines. The
   generator never gives two objects one colour, so one colour mask is one object.
3. Per frame: area and image moments of the mask. A colour is an object when its area is at
   least MIN_AREA on at least half the frames. "Clean" frames (area >= 70% of the median area,
   so not occluded) give shape and size from medians of moment features, which (unlike box
   extents) barely move under blur and noise:
   - skew: the skewness of y. A triangle with its apex up has -0.48..-0.53; circle and square 0.
     skew < TRIANGLE_SKEW (-0.25) -> triangle;
   - kurtosis gap: (kurtosis along x + y and x - y) minus (kurtosis along x and y), over 2. A
     uniform square has 2.4 - 1.8 = 0.6 (its diagonal profile is a tent, its axis profile flat);
     a disc 0 (round in every direction). gap > SQUARE_KURTOSIS_GAP (0.3) -> square, else circle;
   - size: the equivalent extent sqrt(area / fill of the shape) (fill: circle pi/4, square 1,
     triangle 1/2) is ~13 px for small and ~23 px for large; < SMALL_EXTENT (18) -> small.
4. Motion, from the centroid track (x_t, y_t) of the clean frames. An axis *moves* when its
   range max - min >= MOVE_PX (8 px) and *turns* when range - |last - first| >= TURN_PX (2.5 px),
   i.e. it went one way and came back:
   - no axis moves -> "still"; both move -> "bouncing" if either turns, else "diagonal";
   - only x moves -> "bouncing" if it turns, else "moving left|right" by the sign of last - first;
   - only y moves -> "falling" if the track down to its lowest point (first frame within 1.5 px of
     max y) spans >= 5 frames, drops >= MOVE_PX and fits y = a + b t + c t^2 with
     c >= FALL_CURVATURE (0.06 px/frame^2; the generator's gravity gives c >= 0.125, a constant
     velocity c ~ 0); else "bouncing" if it turns; else "moving up|down".
   "still" and "diagonal" are never captioned, so they always score wrong.

`score(frames, caption)` matches each captioned object to a detection of the same colour (or,
failing that, to the unmatched detection agreeing on most attributes) and reports per-attribute
correctness; an object is right when all its captioned attributes match.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vdrt.errors import MediaError
from vdrt.export.tiny.data.captions import parse_caption
from vdrt.export.tiny.data.world import COLOURS

MAX_COLOUR_DIST = 100.0
MIN_AREA = 20
CLEAN_AREA_FRACTION = 0.7
TRIANGLE_SKEW = -0.25
SQUARE_KURTOSIS_GAP = 0.3
SHAPE_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
SMALL_EXTENT = 18.0
MOVE_PX = 8.0
TURN_PX = 2.5
FALL_CURVATURE = 0.06
ATTRIBUTES = ("colour", "shape", "size", "motion")
_PALETTE = np.asarray(list(COLOURS.values()), np.float32)  # (C, 3)
_NAMES = tuple(COLOURS)


@dataclass(frozen=True)
class Detection:
    """One object found in a clip; tracks have NaN where the object is absent."""

    colour: str
    shape: str
    size: str
    motion: str
    centroids: np.ndarray  # (T, 2) float64 (x, y)
    areas: np.ndarray  # (T,) int64
    skew: float  # median over clean frames of the skewness of y
    kurtosis_gap: float  # median diagonal minus axis kurtosis
    extent: float  # sqrt(median area / fill of the detected shape), px

    def attributes(self) -> dict:
        return {"colour": self.colour, "shape": self.shape, "size": self.size, "motion": self.motion}


# ---------------------------------------------------------------- segmentation


def _check_clip(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def background_colour(frames: np.ndarray) -> np.ndarray:
    """Per-channel median of the border pixels of all frames: float32 (3,)."""
    border = np.concatenate(
        [frames[:, 0], frames[:, -1], frames[:, 1:-1, 0], frames[:, 1:-1, -1]], axis=1
    )  # (T, 2W + 2(H-2), 3)
    return np.median(border.reshape(-1, 3), axis=0).astype(np.float32)


def segment(frames: np.ndarray) -> np.ndarray:
    """Palette index per pixel, -1 for background or no palette colour: int8 (T, H, W)."""
    frames = _check_clip(frames)
    chans = [frames[..., i].astype(np.float32) for i in range(3)]  # 3 x (T, H, W)
    best = _sq_dist(chans, background_colour(frames))
    label = np.full(frames.shape[:3], -1, np.int8)
    for c, colour in enumerate(_PALETTE):
        d = _sq_dist(chans, colour)
        win = (d < best) & (d < MAX_COLOUR_DIST**2)
        label[win] = c
        best = np.where(win, d, best)
    return label


def _sq_dist(chans: list[np.ndarray], colour: np.ndarray) -> np.ndarray:
    """Squared RGB distance of every pixel to one colour (elementwise: BLAS is slow at K=3)."""
    return (chans[0] - colour[0]) ** 2 + (chans[1] - colour[1]) ** 2 + (chans[2] - colour[2]) ** 2


def open_mask(m: np.ndarray) -> np.ndarray:
    """Morphological opening of bool masks (..., H, W) by a 2x2 square: keeps the pixels of
    every fully set 2x2 block, so it drops specks and 1-px lines but keeps squares' corners."""
    e = m[..., :-1, :-1] & m[..., 1:, :-1] & m[..., :-1, 1:] & m[..., 1:, 1:]  # (..., H-1, W-1)
    out = np.zeros_like(m)
    for dy in (0, 1):
        for dx in (0, 1):
            out[..., dy : dy + e.shape[-2], dx : dx + e.shape[-1]] |= e
    return out


# ---------------------------------------------------------------- per-frame features


def _kurtosis(d: np.ndarray, m: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Kurtosis of centred coordinates d (T, H, W) over masks m: (T,)."""
    d2 = d * d * m
    return (d2 * d * d).sum(axis=(1, 2)) * area / d2.sum(axis=(1, 2)) ** 2


def _frame_features(m: np.ndarray) -> dict:
    """Per-frame area, centroid, skewness of y and kurtosis gap of masks m (T, H, W); NaN where empty."""
    T, H, W = m.shape
    area = m.sum(axis=(1, 2))
    cx, cy = _centroids(m, area).T
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.arange(W)[None, None, :] - cx[:, None, None]  # (T, 1, W)
        dy = np.arange(H)[None, :, None] - cy[:, None, None]  # (T, H, 1)
        py = m.sum(axis=2)  # (T, H)
        var_y = (py * dy[..., 0] ** 2).sum(1) / area
        skew = (py * dy[..., 0] ** 3).sum(1) / area / var_y**1.5
        axes = _kurtosis(np.broadcast_to(dx, m.shape), m, area) + _kurtosis(np.broadcast_to(dy, m.shape), m, area)
        diagonals = _kurtosis(dx + dy, m, area) + _kurtosis(dx - dy, m, area)
    return {"area": area, "cx": cx, "cy": cy, "skew": skew, "kurtosis_gap": (diagonals - axes) / 2}


def _centroids(m: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per-frame centroids (x, y) of masks m (T, H, W): float64 (T, 2), NaN where empty."""
    T, H, W = m.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([m.sum(axis=1) @ np.arange(W), m.sum(axis=2) @ np.arange(H)], 1) / area[:, None]


def centroid_track(m: np.ndarray) -> np.ndarray:
    """Per-frame centroids (x, y) of masks m (T, H, W): float64 (T, 2), NaN below MIN_AREA (scaled)."""
    area = m.sum(axis=(1, 2))
    s = min(m.shape[1:]) / 64.0
    return np.where((area >= MIN_AREA * s * s)[:, None], _centroids(m, area), np.nan)


def scale_of(frames: np.ndarray) -> float:
    """Pixels per world unit of a clip (T, H, W, 3): the short side over 64; thresholds in px scale with it."""
    return min(frames.shape[1:3]) / 64.0


def _clean_frames(area: np.ndarray, s: float = 1.0) -> np.ndarray:
    """Frames where the object shows at least 70% of its median area (not occluded)."""
    present = area >= MIN_AREA * s * s
    clean = present & (area >= CLEAN_AREA_FRACTION * np.median(area[present]))
    return clean if clean.sum() >= present.sum() / 2 else present


def classify_shape(skew: float, kurtosis_gap: float) -> str:
    if skew < TRIANGLE_SKEW:
        return "triangle"
    return "square" if kurtosis_gap > SQUARE_KURTOSIS_GAP else "circle"


def equivalent_extent(area: float, shape: str) -> float:
    """The box size (px) of a `shape` covering `area` pixels."""
    return float(np.sqrt(area / SHAPE_FILL[shape]))


def classify_size(extent: float, s: float = 1.0) -> str:
    return "small" if extent < SMALL_EXTENT * s else "large"


# ---------------------------------------------------------------- motion


def _turns(v: np.ndarray, s: float = 1.0) -> bool:
    return float(v.max() - v.min() - abs(v[-1] - v[0])) >= TURN_PX * s


def _is_falling(t: np.ndarray, y: np.ndarray, s: float = 1.0) -> bool:
    k = int(np.argmax(y >= y.max() - 1.5 * s))
    if k + 1 < 5 or y[k] - y[0] < MOVE_PX * s:
        return False
    c = np.polyfit(t[: k + 1], y[: k + 1], 2)[0]
    return bool(c >= FALL_CURVATURE * s)


def classify_motion(t: np.ndarray, x: np.ndarray, y: np.ndarray, s: float = 1.0) -> str:
    """Motion word of a centroid track (frame indices t, positions x, y; s px per unit); see the module doc."""
    moves_x, moves_y = np.ptp(x) >= MOVE_PX * s, np.ptp(y) >= MOVE_PX * s
    if not (moves_x or moves_y):
        return "still"
    if moves_x and moves_y:
        return "bouncing" if (_turns(x, s) or _turns(y, s)) else "diagonal"
    if moves_x:
        return "bouncing" if _turns(x, s) else ("moving right" if x[-1] > x[0] else "moving left")
    if _is_falling(t, y, s):
        return "falling"
    if _turns(y, s):
        return "bouncing"
    return "moving down" if y[-1] > y[0] else "moving up"


# ---------------------------------------------------------------- detection


def _detect_colour(m: np.ndarray, colour: str, s: float = 1.0) -> Detection | None:
    f = _frame_features(m)
    present = f["area"] >= MIN_AREA * s * s
    if present.sum() < m.shape[0] / 2:
        return None
    clean = _clean_frames(f["area"], s)
    skew, gap = float(np.median(f["skew"][clean])), float(np.median(f["kurtosis_gap"][clean]))
    shape = classify_shape(skew, gap)
    extent = equivalent_extent(float(np.median(f["area"][clean])), shape)
    t = np.nonzero(clean)[0].astype(float)
    motion = classify_motion(t, f["cx"][clean], f["cy"][clean], s)
    cents = np.where(present[:, None], np.stack([f["cx"], f["cy"]], 1), np.nan)
    return Detection(colour, shape, classify_size(extent, s), motion, cents,
                     np.where(present, f["area"], 0), skew, gap, extent)


def colour_masks(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Opened bool masks (T, H, W) of the palette colours with enough pixels to be an object."""
    labels = segment(frames)
    s = scale_of(frames)
    out = {}
    for c, name in enumerate(_NAMES):
        m = labels == c
        if m.sum() >= MIN_AREA * s * s * m.shape[0] / 2:
            out[name] = open_mask(m)
    return out


def detect(frames: np.ndarray) -> list[Detection]:
    """Objects in a clip (T, H, W, 3) uint8, one per palette colour present, largest first."""
    s = scale_of(_check_clip(frames))
    found = [_detect_colour(m, name, s) for name, m in colour_masks(frames).items()]
    found = [d for d in found if d is not None]
    return sorted(found, key=lambda d: -float(np.median(d.areas)))


# ---------------------------------------------------------------- scoring


def _agreement(want: dict, det: Detection) -> int:
    got = det.attributes()
    return sum(want[a] is not None and want[a] == got[a] for a in ATTRIBUTES)


def _match(wanted: list[dict], found: list[Detection]) -> list[Detection | None]:
    """Same colour first; then the unmatched detection agreeing on most attributes."""
    free = list(found)
    out: list[Detection | None] = [None] * len(wanted)
    for i, w in enumerate(wanted):
        same = [d for d in free if d.colour == w["colour"]]
        if same:
            out[i] = same[0]
            free.remove(same[0])
    for i, w in enumerate(wanted):
        if out[i] is None and free:
            out[i] = max(free, key=lambda d: _agreement(w, d))
            free.remove(out[i])
    return out


def _object_result(want: dict, det: Detection | None) -> dict:
    got = det.attributes() if det is not None else dict.fromkeys(ATTRIBUTES)
    checks = {a: bool(got[a] == want[a]) for a in ATTRIBUTES if want[a] is not None}
    return {"wanted": want, "detected": got, "correct": checks, "ok": all(checks.values())}


def score(frames: np.ndarray, caption: str) -> dict:
    """Does the clip show what the caption asks for?

    Returns {colour, shape, size, motion: fraction of captioned objects with that attribute
    right, or None where no object captions it; accuracy: fraction of objects with every
    captioned attribute right; extra_objects: detections matched to nothing; objects: details}.
    """
    wanted = parse_caption(caption)
    found = detect(frames)
    matched = _match(wanted, found)
    objects = [_object_result(w, d) for w, d in zip(wanted, matched)]
    out = {}
    for a in ATTRIBUTES:
        vals = [o["correct"][a] for o in objects if a in o["correct"]]
        out[a] = float(np.mean(vals)) if vals else None
    out["accuracy"] = float(np.mean([o["ok"] for o in objects]))
    out["extra_objects"] = len(found) - sum(d is not None for d in matched)
    out["objects"] = objects
    return out


def evaluate(clips, captions: list[str]) -> dict:
    """Aggregate `score` over clips: per attribute, correct / captioned over all objects.

    Returns {colour, shape, size, motion, accuracy (objects fully right / objects),
    clip_accuracy (clips with every object right / clips), objects, clips}.
    """
    counts = {a: [0, 0] for a in (*ATTRIBUTES, "accuracy")}
    clip_ok = 0
    for frames, text in zip(clips, captions):
        objs = score(frames, text)["objects"]
        for o in objs:
            for a, ok in o["correct"].items():
                counts[a][0] += ok
                counts[a][1] += 1
            counts["accuracy"][0] += o["ok"]
            counts["accuracy"][1] += 1
        clip_ok += all(o["ok"] for o in objs)
    out = {a: (c / n if n else None) for a, (c, n) in counts.items()}
    out.update(clip_accuracy=clip_ok / max(len(captions), 1), objects=counts["accuracy"][1], clips=len(captions))
    return out
