"""Video I/O: the `Video` result, its writers, and readers for conditioning inputs.

Frames are always `np.uint8 (T, H, W, 3)` RGB on the numpy side and
`float (3, T, H, W)` in [-1, 1] on the torch side (how a VAE decode or a
pixel-space unpatchify comes out).

Writers (chosen by suffix in `Video.save`):
    .mp4            H.264 (PyAV, yuv420p); odd sizes are padded by edge replication
    .gif / .webp    animated, loop forever, frame duration from fps (Pillow)
    folder          frame_00000.png ... (a path with no suffix, ending in '/', or an existing dir)
Every writer writes to a hidden temporary in the target's directory and renames it
onto the target, so a failure never leaves a half-written file behind.

Readers decode only what is asked: `max_frames` stops the decode, `size=(H, W)` resizes each frame as
it is decoded (one full-size frame is held at a time). Limits: an image over MAX_IMAGE_PIXELS
(64 megapixels; a decompression bomb is a few KB) is refused from its header before it is decoded,
and a video read without `max_frames` is refused once its decoded frames pass MAX_DECODED_BYTES.

PyAV (`vdrt[video]`) and torch are imported inside the functions that need them.
"""
from __future__ import annotations

import errno
import logging
import numbers
import os
import re
import shutil
import struct
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from vdrt.errors import MediaError, SamplingError, VdrtError, require

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

WRITE_SUFFIXES = (".mp4", ".gif", ".webp")
AV_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")
PIL_SUFFIXES = (".gif", ".webp", ".png", ".apng", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGE_PIXELS = 64 * 2**20  # per image or frame (8192 x 8192); Pillow only warns below 2x its own 89 MP
MAX_DECODED_BYTES = 4 * 2**30  # a whole video read without max_frames
FRAME_NAME = re.compile(r"frame_\d+\.png")  # what a PNG-folder output holds
# What a broken or foreign file makes Pillow raise (SyntaxError and struct.error come from
# some plugins' header parsers; UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


@dataclass(eq=False, repr=False)
class Video:
    """Generated frames, `np.uint8 (T, H, W, 3)` RGB, played at `fps`."""

    frames: np.ndarray
    fps: float = 8

    def __post_init__(self):
        _check_frames(self.frames, "Video.frames")
        if isinstance(self.fps, bool) or not isinstance(self.fps, numbers.Real) or not 0 < self.fps < 1e4:
            raise MediaError(f"Video.fps must be a positive number below 10000, got {self.fps!r}")

    def __repr__(self) -> str:
        t, h, w, _ = self.frames.shape
        return f"Video({t} frames, {h}x{w}, fps={self.fps:g})"

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.frames)

    def __getitem__(self, index):
        """video[i] -> frame i, uint8 (H, W, 3); video[a:b] (a slice or index list) -> a Video of those frames."""
        try:
            frames = self.frames[index]
        except (IndexError, TypeError, ValueError) as e:
            raise MediaError(f"Video[{index!r}]: {e}; this video has {len(self)} frames: index with an int (one "
                             "frame), a slice or a list of frame indices") from None
        if isinstance(index, (int, np.integer)):
            return frames
        if not isinstance(frames, np.ndarray) or frames.ndim != 4:
            raise MediaError(f"Video[{index!r}]: index with an int (one frame), a slice or a list of frame indices")
        return Video(np.ascontiguousarray(frames), fps=self.fps)

    def save(self, path: str | os.PathLike, *, lossless: bool = False) -> Path:
        """Write to `path`, the format chosen by suffix; returns the path written.

        lossless: webp -> lossless VP8L; mp4 -> crf 0 (chroma still 4:2:0 subsampled);
        no effect on gif (always a 256-colour palette) or png (always lossless).
        GIF and WebP encoders fold a frame identical to the one before into a longer
        duration, so a still stretch reads back as fewer frames (same playback).
        """
        target = Path(path)
        if _is_folder_target(path):
            return _save_png_folder(self.frames, target)
        writer = _WRITERS.get(target.suffix.lower())
        if writer is None:
            raise MediaError(
                f"cannot write {str(path)!r}: unknown suffix {target.suffix!r}; use one of "
                f"{', '.join(WRITE_SUFFIXES)}, or a folder path (no suffix or a trailing '/') for PNG frames")
        _atomic_file(target, lambda tmp: writer(tmp, self.frames, self.fps, lossless))
        log.info("wrote %r to %s", self, target)
        return target


# ---------------------------------------------------------------------------- checks


def _check_frames(frames, what: str) -> None:
    if not isinstance(frames, np.ndarray):
        raise MediaError(f"{what} must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise MediaError(f"{what} must be uint8 in [0, 255], got {frames.dtype}; "
                         "use vdrt.io.frames_from_float for float output in [-1, 1]")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise MediaError(f"{what} must have shape (T, H, W, 3) with T, H, W >= 1, got {frames.shape}")


def _check_size(height, width, what: str) -> None:
    ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width))
    if not ok:
        raise MediaError(f"{what} must be two positive ints (height, width), got ({height!r}, {width!r})")


def _is_folder_target(path) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == "" or Path(text).is_dir()


# ---------------------------------------------------------------------------- atomic writes


def _temp_sibling(target: Path, suffix: str = "") -> Path:
    # A fresh name (not mkstemp) so the writer creates it with the usual umask permissions.
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part{suffix}"


def _atomic_file(target: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)` on a temporary sibling of `target`, then rename it onto `target` (vdrt.fsutil.atomic_path)."""
    from vdrt.fsutil import atomic_path

    _make_parent(target)
    try:
        with atomic_path(target, suffix=".part" + target.suffix) as tmp:
            write(tmp)
    except VdrtError:
        raise
    except Exception as e:
        raise _write_error(target, e) from e


def _write_error(target: Path, e: Exception) -> Exception:
    """A full disk or a permission error (also wrapped by an encoder) -> one MediaError naming the fix; other
    OSError / ValueError -> a MediaError with the cause; anything else is a bug and stays as it is."""
    from vdrt.fsutil import DISK_ERRORS, disk_error

    err = disk_error(e)
    if err is not None:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free some space there or write elsewhere" if full else "choose a folder you can write"
        return MediaError(f"could not write {target}: {DISK_ERRORS[err.errno]}; {fix} (nothing was left behind)")
    if isinstance(e, (OSError, ValueError)):
        return MediaError(f"could not write {target}: {type(e).__name__}: {e}")
    return e


def _make_parent(target: Path) -> None:
    if not target.parent.is_dir():
        log.info("creating folder %s", target.parent)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MediaError(f"cannot create the folder for {target}: {e}") from e


def _save_png_folder(frames: np.ndarray, target: Path) -> Path:
    """Write frame_00000.png ... into a temporary folder, then rename it onto `target`."""
    _check_replaceable_folder(target)
    _make_parent(target)
    tmp = _temp_sibling(target)
    try:
        tmp.mkdir()
        for i, frame in enumerate(frames):
            _to_pil(frame).save(tmp / f"frame_{i:05d}.png", format="PNG")
        _swap_folder(tmp, target)
    except OSError as e:
        raise _write_error(target, e) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("wrote %d PNG frames to %s", len(frames), target)
    return target


def _check_replaceable_folder(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise MediaError(f"cannot write PNG frames to {target}: it exists and is not a folder")
    if target.is_dir():
        others = sorted(p.name for p in target.iterdir() if not FRAME_NAME.fullmatch(p.name))
        if others:
            raise MediaError(f"cannot write PNG frames to {target}: it holds other files ({others[0]!r} ...); "
                             "save to a new or empty folder")


def _swap_folder(tmp: Path, target: Path) -> None:
    """Rename `tmp` onto `target`; an existing (empty or frames-only) target is replaced."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = _temp_sibling(target, ".old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


# ---------------------------------------------------------------------------- writers


def _to_pil(frame: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(frame))


def _pil_sequence(frames: np.ndarray) -> Iterator[Image.Image]:
    # Lazy, so a long video is never held twice in memory.
    return (_to_pil(f) for f in frames[1:])


def _frame_ms(fps: float) -> int:
    return max(1, round(1000 / fps))


def _write_gif(path: Path, frames: np.ndarray, fps: float, lossless: bool) -> None:
    if fps > 50:
        log.warning("GIF frame delays below 20 ms (fps=%g) are slowed down by most viewers", fps)
    _to_pil(frames[0]).save(path, format="GIF", save_all=True, append_images=_pil_sequence(frames),
                            duration=_frame_ms(fps), loop=0, optimize=False)


def _write_webp(path: Path, frames: np.ndarray, fps: float, lossless: bool) -> None:
    _to_pil(frames[0]).save(path, format="WEBP", save_all=True, append_images=_pil_sequence(frames),
                            duration=_frame_ms(fps), loop=0, lossless=lossless, quality=90, method=4)


def pad_even(frames: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, 3) to even H and W by replicating the last row/column (H.264 4:2:0 needs it)."""
    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return frames
    log.info("padding %dx%d to %dx%d by edge replication: H.264 (yuv420p) needs even sizes", h, w, h + ph, w + pw)
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def _to_av(frame: np.ndarray, av):
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")


def _write_mp4(path: Path, frames: np.ndarray, fps: float, lossless: bool) -> None:
    av = require("av")
    frames = pad_even(frames)
    codec = "libx264" if "libx264" in av.codecs_available else "h264"
    try:
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": "0" if lossless else "18"}
            for frame in frames:
                out.mux(stream.encode(_to_av(frame, av)))
            out.mux(stream.encode())
    except av.error.FFmpegError as e:
        from vdrt.fsutil import disk_error

        if disk_error(e) is not None:
            raise  # a full disk or a permission error: said once, naming the target (_atomic_file)
        raise MediaError(f"H.264 encoding of {path} failed: {e}") from e


_WRITERS = {".mp4": _write_mp4, ".gif": _write_gif, ".webp": _write_webp}


# ---------------------------------------------------------------------------- readers


def _existing(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"no such file or folder: {str(path)!r}")
    return p


def read_video(path: str | os.PathLike, max_frames: int | None = None, size: tuple | None = None) -> np.ndarray:
    """Read a video, animated image or folder of images as np.uint8 (T, H, W, 3) RGB.

    .mp4 .webm .mov .mkv .avi go through PyAV; .gif .webp (all frames), single images
    (one frame) through Pillow; a folder reads its png/jpg/webp/bmp files in natural order.
    `max_frames`: the first frames only (the decode stops there); `size=(height, width)`: each frame
    resized (Pillow bicubic, as `resize_frames`) as it is decoded. Without `max_frames`, a video whose
    decoded frames pass MAX_DECODED_BYTES is refused.
    """
    if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool) or
                                   max_frames < 1):
        raise MediaError(f"max_frames must be a positive int or None, got {max_frames!r}")
    if size is not None:
        _check_size(*_pair(size, "read_video size"), "read_video size")
    p = _existing(path)
    suffix = p.suffix.lower()
    keep = _Frames(p, max_frames, size)
    if p.is_dir():
        _read_folder(p, keep)
    elif suffix in AV_SUFFIXES:
        _read_av(p, keep)
    elif suffix in PIL_SUFFIXES:
        _read_pil_frames(p, keep)
    else:
        raise MediaError(f"cannot read {str(path)!r}: unknown suffix {p.suffix!r}; supported: "
                         f"{', '.join(AV_SUFFIXES + PIL_SUFFIXES)}, or a folder of images")
    if not keep.frames:
        raise MediaError(f"{p} holds no frames")
    return np.stack(keep.frames)


def _pair(size, what: str) -> tuple:
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise MediaError(f"{what} must be (height, width), got {size!r}")
    return tuple(size)


class _Frames:
    """The frames a reader keeps: resized as they come, up to `max_frames`, within MAX_DECODED_BYTES."""

    def __init__(self, path: Path, max_frames: int | None, size: tuple | None):
        self.path, self.max_frames, self.size = path, max_frames, size
        self.frames: list[np.ndarray] = []
        self.bytes = 0

    @property
    def full(self) -> bool:
        return self.max_frames is not None and len(self.frames) >= self.max_frames

    def add(self, frame: np.ndarray) -> bool:
        """Keep `frame` (H, W, 3); False once no more are wanted."""
        if self.size is not None and frame.shape[:2] != tuple(self.size):
            if not self.frames:
                log_resize(f"{self.path}", frame.shape[:2], self.size)
            frame = resize_frames(frame, *self.size)
        self.bytes += frame.nbytes
        if self.max_frames is None and self.bytes > MAX_DECODED_BYTES:
            raise MediaError(f"{self.path} decodes to more than {MAX_DECODED_BYTES >> 30} GiB ({len(self.frames)} "
                             f"frames of {frame.shape[1]}x{frame.shape[0]} so far); read fewer frames (max_frames=) "
                             "or a smaller size (size=)")
        self.frames.append(frame)
        return not self.full


def log_resize(what: str, have: tuple, want: tuple) -> None:
    """One log line for a resize: INFO when the aspect ratio is kept, WARNING when the picture is stretched."""
    (h0, w0), (h1, w1) = have, want
    if abs(w0 / h0 - w1 / h1) > 0.01 * (w1 / h1):
        log.warning("%s is %dx%d and is stretched to %dx%d (another aspect ratio); crop it first, or ask for a "
                    "size of its aspect (e.g. --width %d --height %d, rounded to the model's multiple)", what, w0, h0,
                    w1, h1, w1, max(1, round(w1 * h0 / w0)))
    else:
        log.info("%s is resized from %dx%d to %dx%d", what, w0, h0, w1, h1)


def _read_av(path: Path, keep: _Frames) -> None:
    av = require("av")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            _decode_av(container, keep)
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(f"cannot decode {path}: {type(e).__name__}: {e}") from e


def _decode_av(container, keep: _Frames) -> None:
    stream, size = container.streams.video[0], None
    for frame in container.decode(stream):
        size = size or (frame.width, frame.height)  # a mid-stream size change is scaled back
        _check_pixels(size[0], size[1], container.name)
        if not keep.add(frame.to_ndarray(format="rgb24", width=size[0], height=size[1])):
            break


def _check_pixels(width: int, height: int, what) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(f"{what} is {width}x{height} ({width * height / 2**20:.0f} megapixels), over vdrt's limit of "
                         f"{MAX_IMAGE_PIXELS >> 20} (a decompression-bomb guard); downscale it first")


@contextmanager
def _pil_image(path: Path, what: str = "image") -> Iterator[Image.Image]:
    """Open with Pillow, fully decoded; any Pillow failure inside the block becomes a MediaError."""
    try:
        with warnings.catch_warnings():  # Pillow's own warning above 89 MP: vdrt decides below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as img:
            _check_pixels(*img.size, path)  # from the header, before anything is decoded
            img.load()
            yield img
    except _PIL_ERRORS as e:
        raise MediaError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from e


def _read_pil_frames(path: Path, keep: _Frames) -> None:
    with _pil_image(path, "frames of") as img:
        for frame in ImageSequence.Iterator(img):
            if not keep.add(_rgb_array(frame)):
                break


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _read_folder(path: Path, keep: _Frames) -> None:
    files = sorted((f for f in path.iterdir() if f.suffix.lower() in FOLDER_SUFFIXES and f.is_file()),
                   key=_natural_key)
    if not files:
        raise MediaError(f"folder {path} holds no {'/'.join(s[1:] for s in FOLDER_SUFFIXES)} images")
    first = None
    for f in files:
        frame = read_image(f)
        first = first or (f.name, frame.shape)
        if frame.shape != first[1]:
            raise MediaError(f"{f} is {frame.shape[1]}x{frame.shape[0]} but {first[0]} is "
                             f"{first[1][1]}x{first[1][0]}: all frames need one size")
        if not keep.add(frame):
            break


def _rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 (H, W, 3); alpha is composited onto white, 16-bit is scaled down."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.clip(np.asarray(img, dtype=np.float64) / 257.0, 0, 255).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as np.uint8 (H, W, 3) RGB (EXIF rotation applied, alpha onto white)."""
    with _pil_image(_existing(path)) as img:
        return _rgb_array(ImageOps.exif_transpose(img))


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask as np.bool_ (H, W); True = "generate here".

    Images: grey level > 127. `.npy`: a 2-D bool array, or numbers in [0, 1] (> 0.5).
    size: (height, width) to resize to (bilinear on the grey levels, then threshold).
    """
    if size is not None:
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise MediaError(f"read_mask size must be (height, width), got {size!r}")
        _check_size(*size, "read_mask size")
    p = _existing(path)
    grey = _read_npy_mask(p) if p.suffix.lower() == ".npy" else _read_image_mask(p)
    if size is not None and grey.shape != tuple(size):
        log.info("resizing mask %s from %dx%d to %dx%d", p, grey.shape[0], grey.shape[1], *size)
        grey = np.asarray(Image.fromarray(grey).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return grey > 0.5


def _read_image_mask(path: Path) -> np.ndarray:
    """Grey levels as float32 in [0, 1]: 127 -> 0.498 (keep), 128 -> 0.502 (generate)."""
    with _pil_image(path, "mask") as img:
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _read_npy_mask(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise MediaError(f"cannot load mask {path}: {type(e).__name__}: {e}") from e
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or min(arr.shape) == 0:
        raise MediaError(f"mask {path} must be a 2-D (H, W) array, got shape {getattr(arr, 'shape', None)}")
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise MediaError(f"mask {path} must be bool or numbers in [0, 1] (> 0.5 = generate), "
                         f"got {arr.dtype} in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.float32)


# ---------------------------------------------------------------------------- conversions


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (T, H, W, 3) or (H, W, 3) uint8 to (height, width), Pillow bicubic (antialiased)."""
    _check_size(height, width, "resize_frames size")
    single = isinstance(frames, np.ndarray) and frames.ndim == 3
    batch = frames[None] if single else frames
    _check_frames(batch, "resize_frames input")
    if batch.shape[1:3] != (height, width):
        batch = np.stack([np.asarray(_to_pil(f).resize((width, height), Image.Resampling.BICUBIC))
                          for f in batch])
    return batch[0] if single else batch


def to_float(frames: np.ndarray, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
    """uint8 (T, H, W, 3) -> float (3, T, H, W) in [-1, 1] (float32 unless `dtype`)."""
    import torch

    _check_frames(frames, "to_float input")
    frames = np.require(frames, requirements=["C", "W"])  # a read-only array is copied (torch wants writable)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (T, H, W, C) -> (C, T, H, W)
    x = x.to(torch.float32) / 127.5 - 1.0
    return x if dtype is None else x.to(dtype)


def frames_from_float(x: "torch.Tensor") -> np.ndarray:
    """float (3, T, H, W) in [-1, 1] -> np.uint8 (T, H, W, 3); values outside are clamped."""
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != 3 or not x.is_floating_point():
        raise MediaError(f"frames_from_float needs a float tensor (3, T, H, W), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}; "
                         "drop the batch dim with x[0]")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise SamplingError("decoded frames hold NaN or inf: sampling diverged (try more steps or another dtype)")
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().numpy()  # (C, T, H, W) -> (T, H, W, C)
