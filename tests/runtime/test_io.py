"""vdrt.io: writers round-trip, writes are atomic, readers refuse bad media clearly."""
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

import vdrt.io as vio
from vdrt.errors import MediaError, SamplingError
from vdrt.io import (Video, frames_from_float, pad_even, read_image, read_mask, read_video,
                     resize_frames, to_float)

av = pytest.importorskip("av")


def make_frames(t=9, h=96, w=128, seed=0):
    """Smooth moving colour gradients plus a moving square of a random colour: (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    phase, colour = rng.uniform(0, 6, 3), rng.integers(0, 256, (t, 3))
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        for c in range(3):
            out[i, ..., c] = 127.5 + 100 * np.sin(3 * x / w + 2 * y / h + phase[c] + 0.3 * i)
        s = max(2, h // 5)
        y0, x0 = (3 * i) % (h - s), (5 * i) % (w - s)
        out[i, y0:y0 + s, x0:x0 + s] = colour[i]
    return out


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert np.isfinite(mse)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def leftovers(folder, keep=()):
    return sorted(p for p in os.listdir(folder) if p not in keep)


# ---------------------------------------------------------------- round trips


def test_mp4_round_trip(tmp_path):
    frames = make_frames()
    out = Video(frames).save(tmp_path / "a.mp4")
    back = read_video(out)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert psnr(frames, back) > 30
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert s.average_rate == 8
    assert leftovers(tmp_path) == ["a.mp4"]


def test_mp4_fps_and_max_frames(tmp_path):
    Video(make_frames(t=6, h=32, w=32), fps=12.5).save(tmp_path / "a.mp4")
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(12.5)
    assert read_video(tmp_path / "a.mp4", max_frames=4).shape == (4, 32, 32, 3)


def test_mp4_odd_size_is_padded_by_edge_replication(tmp_path, caplog):
    frames = make_frames(t=5, h=33, w=47, seed=1)
    with caplog.at_level(logging.INFO, logger="vdrt.io"):
        Video(frames).save(tmp_path / "odd.mp4")
    assert "padding 33x47 to 34x48 by edge replication" in caplog.text
    back = read_video(tmp_path / "odd.mp4")
    assert back.shape == (5, 34, 48, 3)
    assert psnr(frames, back[:, :33, :47]) > 30
    # The added row/column repeats the edge; zero padding would be ~100 grey levels off.
    assert np.abs(back[:, 33, :47].astype(int) - frames[:, 32]).mean() < 8
    assert np.abs(back[:, :33, 47].astype(int) - frames[:, :, 46]).mean() < 8


def test_pad_even_replicates_edges_exactly():
    frames = make_frames(t=2, h=5, w=7)
    padded = pad_even(frames)
    assert padded.shape == (2, 6, 8, 3)
    np.testing.assert_array_equal(padded[:, :5, :7], frames)
    np.testing.assert_array_equal(padded[:, 5, :7], frames[:, 4])
    np.testing.assert_array_equal(padded[:, :5, 7], frames[:, :, 6])
    even = make_frames(t=2, h=6, w=8)
    assert pad_even(even) is even


def test_gif_round_trip(tmp_path):
    frames = make_frames(h=48, w=64)
    Video(frames, fps=8).save(tmp_path / "a.gif")
    back = read_video(tmp_path / "a.gif")
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 3  # 256-colour palette per frame
    assert psnr(frames, back) > 35
    with Image.open(tmp_path / "a.gif") as img:
        assert img.info["loop"] == 0 and img.info["duration"] in (120, 125, 130)
        assert img.n_frames == 9


@pytest.mark.parametrize("lossless", [True, False])
def test_webp_round_trip(tmp_path, lossless):
    frames = make_frames(h=48, w=64, seed=2)
    Video(frames, fps=10).save(tmp_path / "a.webp", lossless=lossless)
    back = read_video(tmp_path / "a.webp")
    assert back.shape == frames.shape
    if lossless:
        np.testing.assert_array_equal(back, frames)
    else:
        assert psnr(frames, back) > 30
    with Image.open(tmp_path / "a.webp") as img:
        img.load()
        assert img.info["loop"] == 0 and img.info["duration"] == 100 and img.n_frames == 9


@pytest.mark.parametrize("name", ["frames", "frames/", "nested/deeper/frames"])
def test_png_folder_round_trip(tmp_path, name):
    frames = make_frames(t=4, h=20, w=30)
    out = Video(frames).save(str(tmp_path / name))
    assert sorted(os.listdir(out)) == [f"frame_{i:05d}.png" for i in range(4)]
    np.testing.assert_array_equal(read_video(out), frames)
    np.testing.assert_array_equal(read_video(out, max_frames=2), frames[:2])


def test_png_folder_replaces_previous_frames_and_existing_empty_dir(tmp_path):
    target = tmp_path / "out.d"  # an existing directory wins over its suffix
    target.mkdir()
    Video(make_frames(t=6, h=8, w=8)).save(target)
    new = make_frames(t=3, h=8, w=8, seed=5)
    Video(new).save(target)
    assert sorted(os.listdir(target)) == [f"frame_{i:05d}.png" for i in range(3)]
    np.testing.assert_array_equal(read_video(target), new)
    assert leftovers(tmp_path) == ["out.d"]


def test_png_folder_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(MediaError, match="holds other files"):
        Video(make_frames(t=2, h=8, w=8)).save(tmp_path)
    assert leftovers(tmp_path) == ["notes.txt"]


def test_read_folder_natural_order_and_size_check(tmp_path):
    frames = make_frames(t=11, h=8, w=10)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"img_{i}.png")
    np.testing.assert_array_equal(read_video(tmp_path), frames)  # img_10 after img_9
    Image.fromarray(make_frames(t=1, h=9, w=10)[0]).save(tmp_path / "img_11.png")
    with pytest.raises(MediaError, match="img_11.png.*one size"):
        read_video(tmp_path)


def test_read_single_image_as_one_frame(tmp_path):
    frame = make_frames(t=1, h=12, w=14)[0]
    Image.fromarray(frame).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_video(tmp_path / "x.png"), frame[None])


# ---------------------------------------------------------------- atomicity


def failing_after(real, n, tmp_path, pattern):
    """Wrap `real` to raise on call n, after checking a partial temp output exists."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            assert list(tmp_path.glob(pattern)), "the writer should have a temp output open"
            raise RuntimeError("encoder exploded")
        return real(*args, **kwargs)
    return fake


@pytest.mark.parametrize("suffix,hook", [(".mp4", "_to_av"), (".gif", "_to_pil"), (".webp", "_to_pil")])
def test_failing_writer_leaves_nothing_half_written(tmp_path, monkeypatch, suffix, hook):
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"previous output")
    # x264 buffers ~40 frames of lookahead before muxing (and so opening) the file.
    monkeypatch.setattr(vio, hook, failing_after(getattr(vio, hook), 60, tmp_path, f".out{suffix}.*.part*"))
    with pytest.raises(RuntimeError, match="encoder exploded"):
        Video(make_frames(t=64, h=16, w=16)).save(target)
    assert target.read_bytes() == b"previous output"
    assert leftovers(tmp_path) == [target.name]


def test_failing_png_folder_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(vio, "_to_pil", failing_after(vio._to_pil, 3, tmp_path, ".frames.*.part/frame_00001.png"))
    with pytest.raises(RuntimeError, match="encoder exploded"):
        Video(make_frames(t=5, h=8, w=8)).save(tmp_path / "frames")
    assert leftovers(tmp_path) == []


def test_encoder_error_becomes_media_error(tmp_path, monkeypatch):
    def broken(frame, av_mod):
        raise av.error.InvalidDataError(1094995529, "bad frame")
    monkeypatch.setattr(vio, "_to_av", broken)
    with pytest.raises(MediaError, match="out.mp4") as info:
        Video(make_frames(t=2, h=8, w=8)).save(tmp_path / "out.mp4")
    assert info.value.__cause__ is not None
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- bad inputs


def test_unknown_suffix_names_supported_ones(tmp_path):
    with pytest.raises(MediaError, match=r"\.avi.*\.mp4, \.gif, \.webp"):
        Video(make_frames(t=2, h=8, w=8)).save(tmp_path / "x.avi")
    with pytest.raises(MediaError, match="unknown suffix '.txt'"):
        (tmp_path / "x.txt").write_text("hi")
        read_video(tmp_path / "x.txt")


@pytest.mark.parametrize("frames", [
    np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32),   # float
    np.random.default_rng(0).integers(0, 255, (2, 8, 8, 3)).astype(np.int64),
    np.random.default_rng(0).integers(0, 255, (8, 8, 3)).astype(np.uint8),  # no T
    np.random.default_rng(0).integers(0, 255, (2, 8, 8, 4)).astype(np.uint8),  # RGBA
    np.zeros((0, 8, 8, 3), np.uint8),  # no frames
    [[[[0, 0, 0]]]],  # not an array
])
def test_video_validates_frames(frames):
    with pytest.raises(MediaError, match="Video.frames"):
        Video(frames)


@pytest.mark.parametrize("fps", [0, -8, float("nan"), "8", True])
def test_video_validates_fps(fps):
    with pytest.raises(MediaError, match="fps"):
        Video(make_frames(t=1, h=4, w=4), fps=fps)


def test_video_defaults_and_repr():
    v = Video(make_frames(t=3, h=10, w=12))
    assert v.fps == 8 and repr(v) == "Video(3 frames, 10x12, fps=8)"


@pytest.mark.parametrize("reader", [read_video, read_image, read_mask])
def test_missing_file(tmp_path, reader):
    with pytest.raises(MediaError, match="no such file.*nope"):
        reader(tmp_path / "nope.png")


@pytest.mark.parametrize("name,reader", [("x.mp4", read_video), ("x.webm", read_video), ("x.png", read_video),
                                         ("x.png", read_image), ("x.gif", read_video), ("x.png", read_mask),
                                         ("x.npy", read_mask)])
def test_corrupt_file(tmp_path, name, reader):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=name) as info:
        reader(path)
    assert info.value.__cause__ is not None


def test_truncated_png(tmp_path):
    Image.fromarray(make_frames(t=1, h=64, w=64)[0]).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "x.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="x.png"):
        read_image(tmp_path / "x.png")


def test_empty_folder_and_bad_max_frames(tmp_path):
    with pytest.raises(MediaError, match="holds no"):
        read_video(tmp_path)
    with pytest.raises(MediaError, match="max_frames"):
        read_video(tmp_path, max_frames=0)


# ---------------------------------------------------------------- images and masks


def test_read_image_modes(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = make_frames(t=1, h=4, w=5)[0]
    rgba[:, :2, 3] = 255  # opaque left, transparent right
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :2], rgba[:, :2, :3])
    assert (out[:, 2:] == 255).all()  # transparent -> white
    grey = make_frames(t=1, h=4, w=5)[0, ..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.repeat(grey[..., None], 3, -1))
    deep = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_array_equal(read_image(tmp_path / "d.png")[..., 1], np.round(deep / 257).astype(np.uint8))


def test_read_mask_threshold(tmp_path):
    grey = np.array([[0, 127, 128, 255], [200, 10, 127, 128]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png")
    assert m.dtype == np.bool_
    np.testing.assert_array_equal(m, grey > 127)
    Image.fromarray(np.repeat(grey[..., None], 3, -1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), grey > 127)


def test_read_mask_npy(tmp_path):
    rng = np.random.default_rng(4)
    b = rng.random((6, 7)) > 0.5
    np.save(tmp_path / "b.npy", b)
    np.testing.assert_array_equal(read_mask(tmp_path / "b.npy"), b)
    f = rng.random((6, 7))
    np.save(tmp_path / "f.npy", f)
    np.testing.assert_array_equal(read_mask(tmp_path / "f.npy"), f > 0.5)
    for name, bad, msg in [("u8", (f * 255).astype(np.uint8), r"\[0, 1\]"), ("3d", b[None], "2-D"),
                           ("nan", np.full((3, 3), np.nan), r"\[0, 1\]")]:
        np.save(tmp_path / f"{name}.npy", bad)
        with pytest.raises(MediaError, match=msg):
            read_mask(tmp_path / f"{name}.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MediaError, match="obj.npy"):
        read_mask(tmp_path / "obj.npy")


def test_read_mask_size(tmp_path):
    grey = np.zeros((20, 30), np.uint8)
    grey[:, :12] = 255  # generate in the left 40%
    Image.fromarray(grey).save(tmp_path / "m.png")
    m = read_mask(tmp_path / "m.png", size=(10, 50))
    assert m.shape == (10, 50)
    assert m[:, :19].all() and not m[:, 21:].any()
    assert read_mask(tmp_path / "m.png", size=(20, 30)).shape == (20, 30)
    for size in [(0, 10), (10,), (10.0, 5), "10x10"]:
        with pytest.raises(MediaError, match="size"):
            read_mask(tmp_path / "m.png", size=size)


# ---------------------------------------------------------------- conversions


def test_resize_frames():
    frames = make_frames(t=3, h=40, w=60)
    out = resize_frames(frames, 20, 30)
    assert out.shape == (3, 20, 30, 3) and out.dtype == np.uint8
    reference = np.stack([np.asarray(Image.fromarray(f).resize((30, 20), Image.Resampling.BICUBIC)) for f in frames])
    np.testing.assert_array_equal(out, reference)
    assert resize_frames(frames, 40, 60) is frames
    assert resize_frames(frames[0], 10, 12).shape == (10, 12, 3)
    back = resize_frames(resize_frames(frames, 80, 120), 40, 60)
    assert psnr(frames, back) > 30
    with pytest.raises(MediaError, match="size"):
        resize_frames(frames, 0, 10)


def test_float_round_trip_and_layout():
    frames = make_frames(t=4, h=6, w=10)
    x = to_float(frames)
    assert x.shape == (3, 4, 6, 10) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x[1, 2, 3, 4].item() == pytest.approx(frames[2, 3, 4, 1] / 127.5 - 1)
    np.testing.assert_array_equal(frames_from_float(x), frames)
    assert np.abs(frames_from_float(x.to(torch.bfloat16)).astype(int) - frames).max() <= 1
    assert to_float(frames, dtype=torch.float16).dtype == torch.float16


def test_frames_from_float_clamps_and_refuses_nan():
    x = torch.randn(3, 2, 4, 5, generator=torch.Generator().manual_seed(0)) * 3
    out = frames_from_float(x)
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8
    expected = ((x.clamp(-1, 1).double() + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert (out[x.permute(1, 2, 3, 0).numpy() > 1] == 255).all()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(SamplingError, match="NaN"):
        frames_from_float(x)
    with pytest.raises(MediaError, match=r"\(3, T, H, W\)"):
        frames_from_float(torch.zeros(1, 3, 2, 4, 4))
