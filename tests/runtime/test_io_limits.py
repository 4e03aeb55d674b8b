"""vdrt.io's readers decode only what is asked (frames, size), refuse decompression bombs from the header,
and its writers turn a full disk or a permission error into one line, leaving nothing behind."""
import errno
import logging
import os
import time

import numpy as np
import pytest
from PIL import Image

import vdrt.io as vio
from vdrt.errors import MediaError
from vdrt.io import Video, read_image, read_video

av = pytest.importorskip("av")


def frames(t=8, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_max_frames_stops_the_decode_and_size_resizes_each_frame(tmp_path, monkeypatch):
    Video(frames(t=40, h=96, w=128)).save(tmp_path / "a.mp4")
    decoded = []
    real = vio._Frames.add
    monkeypatch.setattr(vio._Frames, "add", lambda self, f: decoded.append(f.shape) or real(self, f))
    out = read_video(tmp_path / "a.mp4", max_frames=5, size=(24, 32))
    assert out.shape == (5, 24, 32, 3) and len(decoded) == 5  # the decode stopped at 5 of 40
    full = read_video(tmp_path / "a.mp4", max_frames=5)
    np.testing.assert_array_equal(out, vio.resize_frames(full, 24, 32))  # the same resize as afterwards


@pytest.mark.parametrize("suffix", [".gif", ".webp", "/"])
def test_every_reader_takes_max_frames_and_size(tmp_path, suffix):
    Video(frames(t=6)).save(str(tmp_path / "v") + suffix)
    assert read_video(str(tmp_path / "v") + suffix, max_frames=3, size=(12, 16)).shape == (3, 12, 16, 3)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (11000, 11000)).save(path, optimize=True)  # 121 megapixels in a few KB
    assert path.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match=r"11000x11000 \(115 megapixels\), over vdrt's limit of 64.*downscale"):
        read_image(path)
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(MediaError, match="decompression-bomb"):
        read_video(path)


def test_a_video_read_whole_is_refused_past_the_byte_limit(tmp_path, monkeypatch):
    Video(frames(t=30, h=32, w=32)).save(tmp_path / "a.gif")
    monkeypatch.setattr(vio, "MAX_DECODED_BYTES", 10 * 32 * 32 * 3)
    with pytest.raises(MediaError, match=r"decodes to more than .*max_frames=.*size="):
        read_video(tmp_path / "a.gif")
    assert read_video(tmp_path / "a.gif", max_frames=5).shape[0] == 5  # a bounded read is fine


@pytest.mark.parametrize("have, want, level", [((48, 64), (24, 32), "INFO"), ((48, 64), (32, 32), "WARNING")])
def test_a_resize_is_logged_and_a_stretch_warned(caplog, have, want, level):
    with caplog.at_level(logging.INFO, logger="vdrt.io"):
        vio.log_resize("x.png", have, want)
    (rec,) = caplog.records
    assert rec.levelname == level
    if level == "WARNING":
        assert "stretched" in rec.getMessage() and "--width 32 --height 24" in rec.getMessage()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device; free some space"),
                                         (errno.EDQUOT, "quota"), (errno.EACCES, "permission denied; choose a folder"),
                                         (errno.EROFS, "read-only")])
@pytest.mark.parametrize("suffix, hook", [(".mp4", "_to_av"), (".gif", "_to_pil"), (".webp", "_to_pil"),
                                          ("/", "_to_pil")])
def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code, words, suffix, hook):
    real, calls = getattr(vio, hook), []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(code, os.strerror(code))
        return real(*args)
    monkeypatch.setattr(vio, hook, failing)
    target = str(tmp_path / "out") + suffix
    with pytest.raises(MediaError) as e:
        Video(frames(t=6, h=16, w=16)).save(target)
    msg = str(e.value)
    assert words in msg and "nothing was left behind" in msg and "\n" not in msg and "out" in msg
    assert os.listdir(tmp_path) == []
