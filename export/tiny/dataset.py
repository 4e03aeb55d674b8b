"""Export a labelled synthetic data set from the procedural world: clips plus per-frame ground truth.

    python -m vdrt.export.tiny.dataset OUT --n 1000 [--split train] [--frames 33 --height 64 --width 96]
        [--format npy|png|mp4|gif] [--start 0] [--force]
    export_dataset("out/", n=1000, geometry=Geometry(33, 64, 96))

Writes, into a fresh folder that replaces OUT only when everything is written:
- `manifest.json`: format, world version, split, index range, geometry, fps, palette, the clip list
  (file, labels file, caption);
- `clips/NNNNNN.<format>`: npy (uint8 (T, H, W, 3), exact), a folder of PNG frames, mp4 or gif;
- `labels/NNNNNN.json`: caption, background, and per object (back to front: `depth` 0 is drawn
  first) its shape, colour, size, motion and, per frame, the centroid of its visible pixels, its
  visible area, its visible box and its whole (amodal) box (x0, y0, x1, y1 inclusive, pixels), and
  the unrounded mask centre; null where the object is hidden behind the other one.
Clips are those of `vdrt.export.tiny.data.procedural.split_scenes`: fixed by (split, index, geometry).
A non-empty OUT is refused unless --force.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from vdrt.errors import ConfigError, VdrtError
from vdrt.export.tiny.data.world import BACKGROUNDS, COLOURS, Geometry

log = logging.getLogger(__name__)

FORMATS = ("npy", "png", "mp4", "gif")
FORMAT_NAME, WORLD_VERSION, FPS = "vdrt-tiny-world", 2, 8
CHUNK = 256


def _nulls(a: np.ndarray, hidden: np.ndarray) -> list:
    """Rows of `a` as lists, None on hidden frames."""
    return [None if h else [round(float(v), 3) for v in np.atleast_1d(row)] for row, h in zip(a, hidden)]


def clip_labels(spec, truth, caption: str) -> dict:
    """The JSON labels of one clip (see the module doc)."""
    objects = []
    for k, o in enumerate(spec.objects):
        hidden = truth.areas[k] == 0
        objects.append({"depth": k, "shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion,
                        "centroid": _nulls(truth.centroids[k], hidden), "area": truth.areas[k].tolist(),
                        "box": _nulls(truth.boxes[k], hidden), "amodal_box": truth.amodal_boxes[k].tolist(),
                        "position": _nulls(truth.positions[k], np.zeros_like(hidden))})
    g = spec.geometry
    return {"caption": caption, "background": spec.background, "frames": g.frames, "height": g.height,
            "width": g.width, "objects": objects}


def _write_clip(path: Path, frames: np.ndarray, fmt: str) -> str:
    from vdrt.io import Video

    if fmt == "npy":
        np.save(path.with_suffix(".npy"), frames)
        return path.with_suffix(".npy").name
    target = path if fmt == "png" else path.with_suffix(f".{fmt}")
    Video(frames, FPS).save(target, lossless=True)
    return target.name


def _check(out: Path, n: int, fmt: str, force: bool) -> None:
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; use one of {FORMATS}")
    if fmt == "mp4":
        from vdrt.errors import require

        require("av", "video")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} is not empty; pass --force to replace it, or choose an empty folder")


def _write_chunk(tmp: Path, split: str, start: int, n: int, geometry: Geometry, fmt: str) -> list[dict]:
    from vdrt.export.tiny.data import procedural as P
    from vdrt.export.tiny.data import raster as R
    from vdrt.export.tiny.data.captions import decode

    scenes, ids = P.split_scenes(split, start, n, geometry)
    frames, truth = R.render(scenes, with_truth=True)
    specs, texts, rows = P.specs_from_scenes(scenes), decode(ids), []
    for i in range(n):
        name = f"{start + i:06d}"
        clip = _write_clip(tmp / "clips" / name, frames[i].numpy(), fmt)
        labels = clip_labels(specs[i], P.ClipTruth(**truth.clip(i)), texts[i])
        (tmp / "labels" / f"{name}.json").write_text(json.dumps(labels))
        rows.append({"index": start + i, "clip": f"clips/{clip}", "labels": f"labels/{name}.json",
                     "caption": texts[i]})
    return rows


def _manifest(split, start, n, geometry: Geometry, fmt, rows) -> dict:
    return {"format": FORMAT_NAME, "world_version": WORLD_VERSION, "split": split, "start": start, "n": n,
            "frames": geometry.frames, "height": geometry.height, "width": geometry.width, "fps": FPS,
            "clip_format": fmt, "colours": COLOURS, "backgrounds": BACKGROUNDS,
            "coordinates": "pixels, (x, y) = (column, row), y down; boxes x0, y0, x1, y1 inclusive", "clips": rows}


def export_dataset(out, n: int, split: str = "train", geometry: Geometry = Geometry(), fmt: str = "npy",
                   start: int = 0, force: bool = False) -> Path:
    """Write clips start..start+n-1 of `split` with their labels to `out` (see the module doc)."""
    from vdrt.export.tiny.data.procedural import check_split

    out = Path(out)
    _check(out, n, fmt, force)
    check_split(split, start, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "clips").mkdir()
        (tmp / "labels").mkdir()
        rows = []
        for i in range(start, start + n, CHUNK):
            rows += _write_chunk(tmp, split, i, min(CHUNK, start + n - i), geometry, fmt)
        (tmp / "manifest.json").write_text(json.dumps(_manifest(split, start, n, geometry, fmt, rows), indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("wrote %d %s clips (%s) to %s", n, split, fmt, out)
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdrt.export.tiny.dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output folder (must be empty or absent, unless --force)")
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--split", default="train", help="train, val or test")
    p.add_argument("--start", type=int, default=0, help="first clip index of the split")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--format", default="npy", help=f"clip files: {', '.join(FORMATS)}")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        geo = Geometry(args.frames, args.height, args.width)
        path = export_dataset(args.out, args.n, args.split, geo, args.format, args.start, args.force)
    except VdrtError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
