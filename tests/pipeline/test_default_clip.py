"""The default clip is bit-identical across the redesign: `vdrt generate "a red circle bouncing"` (default
model, seed 0, CPU). The hash was recorded on main ea0899b before anything moved; PNG frames are lossless, so
reading them back gives the exact uint8 frames the pipeline made."""
from __future__ import annotations

import hashlib

import numpy as np

from vdrt.cli import main

DEFAULT_CLIP_SHA256 = "869391515a7dca4a9b4c9ce31b1c970b9e2866ca6478db3e29839d9eec529600"  # (17, 64, 64, 3) uint8


def _sha(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def test_default_clip_is_bit_identical(tmp_path):
    from vdrt.io import read_video

    out = tmp_path / "frames"
    assert main(["generate", "a red circle bouncing", "-o", str(out) + "/", "--no-progress", "--device", "cpu"]) == 0
    frames = read_video(out)
    assert frames.shape == (17, 64, 64, 3)
    assert _sha(frames) == DEFAULT_CLIP_SHA256


def test_default_clip_through_the_api():
    import vdrt

    video = vdrt.Pipeline.from_pretrained("vdrt-tiny", device="cpu")("a red circle bouncing", seed=0)
    assert _sha(video.frames) == DEFAULT_CLIP_SHA256
