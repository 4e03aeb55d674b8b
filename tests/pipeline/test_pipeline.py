"""The pipeline end to end on random-weight presets: shapes, determinism, CFG batching, NaN stop, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vdrt
from vdrt.errors import ConfigError, MediaError, SamplingError

from pipeline_helpers import CountingEngine


def test_t2v_frames_shape_dtype_and_determinism(tiny_pipe, small):
    a = tiny_pipe("a red circle bouncing", seed=1, **small)
    b = tiny_pipe("a red circle bouncing", seed=1, **small)
    c = tiny_pipe("a red circle bouncing", seed=2, **small)
    assert isinstance(a, vdrt.Video)
    assert a.frames.shape == (5, 32, 32, 3) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.std() > 1  # not a constant image


def test_prompt_changes_the_video(tiny_pipe, small):
    a = tiny_pipe("a red circle", seed=0, **small)
    b = tiny_pipe("a blue square", seed=0, **small)
    assert not np.array_equal(a.frames, b.frames)


def test_cfg_is_one_batched_call_per_step(small):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    pipe.engine = CountingEngine(pipe.engine)
    pipe("a red circle", guidance=3.0, **{**small, "num_steps": 3})
    assert [c["batch"] for c in pipe.engine.calls] == [2, 2, 2]
    pipe.engine.calls.clear()
    pipe("a red circle", guidance=3.0, guidance_range=(0.0, 0.5), **{**small, "num_steps": 4})
    assert [c["batch"] for c in pipe.engine.calls] == [2, 2, 1, 1]
    pipe.engine.calls.clear()
    pipe("a red circle", guidance=1.0, **small)
    assert [c["batch"] for c in pipe.engine.calls] == [1, 1]


def test_nan_in_latents_stops_and_names_the_step(small):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    pipe.engine = CountingEngine(pipe.engine, poison_at=1)
    with pytest.raises(SamplingError, match=r"step 2/3"):
        pipe("x", **{**small, "num_steps": 3})


def test_precomputed_prompt_embeds(tiny_pipe, small):
    emb = torch.randn(7, tiny_pipe.config.text_dim)
    a = tiny_pipe(prompt_embeds=emb, **small)
    b = tiny_pipe(prompt_embeds=emb[None], **small)
    assert np.array_equal(a.frames, b.frames)
    with pytest.raises(ConfigError, match="do not fit"):
        tiny_pipe(prompt_embeds=torch.randn(7, 5), **small)


@pytest.mark.parametrize("sampler", ["euler", "unipc", "dpm++2m", "fewstep"])
def test_every_sampler_runs(tiny_pipe, small, sampler):
    v = tiny_pipe("a green square", sampler=sampler, **small)
    assert v.frames.shape == (5, 32, 32, 3)


@pytest.mark.parametrize("kw, match", [
    (dict(num_steps=0), "num_steps"),
    (dict(num_steps=-2), "num_steps"),
    (dict(guidance=-1.0), "guidance"),
    (dict(height=30), "multiple of 4"),
    (dict(width=0), "width=0 must be a positive integer"),
    (dict(num_frames=0), "num_frames"),
    (dict(mode="warp"), "unknown mode"),
    (dict(sampler="ddim"), "unknown sampler"),
    (dict(mode="v2v", video=np.full((5, 32, 32, 3), 100, np.uint8), strength=1.5), "strength"),
    (dict(mode="t2v", image=np.full((32, 32, 3), 9, np.uint8)), "does not use image"),
    (dict(mode="i2v"), "needs a first image"),
    (dict(mode="inpaint", video=np.full((5, 32, 32, 3), 9, np.uint8)), "needs a mask"),
])
def test_bad_input_is_a_clear_error(tiny_pipe, small, kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny_pipe("x", **{**small, **kw})


def test_bad_media(tiny_pipe, small, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(MediaError, match="broken.png"):
        tiny_pipe("x", mode="i2v", image=str(bad), **small)
    with pytest.raises(MediaError, match="does not match"):
        tiny_pipe("x", mode="inpaint", video=np.full((5, 32, 32, 3), 9, np.uint8), mask=np.ones((16, 16), bool),
                  **small)
    with pytest.raises(MediaError):
        tiny_pipe("x", mode="i2v", image=np.zeros((32, 32), np.float32), **small)


def test_wan_frames_must_be_4k_plus_1():
    pipe = vdrt.Pipeline.from_pretrained("wan-tiny", device="cpu")
    with pytest.raises(ConfigError, match="4k\\+1"):
        pipe("x", num_frames=6, height=32, width=32, num_steps=1, progress=False)
    with pytest.raises(ConfigError, match="multiple of 16"):
        pipe("x", num_frames=5, height=40, width=32, num_steps=1, progress=False)


def test_wan_tiny_t2v_through_the_vae():
    pipe = vdrt.Pipeline.from_pretrained("wan-tiny", device="cpu")
    v = pipe("a cat", num_frames=5, height=32, width=32, num_steps=2, guidance=2.0, progress=False)
    assert v.frames.shape == (5, 32, 32, 3)
