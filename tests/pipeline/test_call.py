"""The call surface: vdrt's and diffusers' names, output types, callbacks, generators, .to(), progress config."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vdrt
from vdrt.errors import ConfigError
from vdrt.pipeline import PipelineOutput

SMALL = dict(num_frames=5, height=32, width=32, progress=False)


@pytest.fixture(scope="module")
def pipe():
    return vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")


def test_diffusers_names_give_vdrts_result(pipe):
    ours = pipe("a red circle", num_steps=2, guidance=3.0, seed=4, **SMALL)
    theirs = pipe(prompt="a red circle", num_inference_steps=2, guidance_scale=3.0, seed=4, **SMALL)
    assert np.array_equal(ours.frames, theirs.frames)
    req = vdrt.GenerateRequest(prompt="a red circle", num_steps=2, guidance=3.0, seed=4, num_frames=5, height=32,
                               width=32)
    assert np.array_equal(pipe(req, progress=False).frames, ours.frames)


def test_output_types(pipe):
    video = pipe("x", num_steps=1, seed=1, **SMALL)
    out = pipe("x", num_inference_steps=1, seed=1, output_type="np", **SMALL)
    assert isinstance(out, PipelineOutput) and out.frames.shape == (1, 5, 32, 32, 3) and out.frames.dtype == np.float32
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    assert np.array_equal((out.frames[0] * 255).astype(np.uint8), video.frames)  # diffusers' own conversion
    pt = pipe("x", num_steps=1, seed=1, output_type="pt", **SMALL).frames
    assert pt.shape == (1, 5, 3, 32, 32) and np.array_equal(pt.permute(0, 1, 3, 4, 2).numpy(), out.frames)
    pil = pipe("x", num_steps=1, seed=1, output_type="pil", **SMALL).frames
    assert len(pil) == 1 and len(pil[0]) == 5 and np.array_equal(np.asarray(pil[0][2]), video.frames[2])
    lat = pipe("x", num_steps=1, seed=1, output_type="latent", **SMALL).frames
    assert lat.shape == (1, 3, 5, 32, 32)
    (frames,) = pipe("x", num_steps=1, seed=1, output_type="np", return_dict=False, **SMALL)
    assert np.array_equal(frames, out.frames)


def test_prompt_lists_and_videos_per_prompt(pipe):
    one = pipe("b", num_steps=1, seed=0, **SMALL)
    many = pipe(["a", "b"], num_steps=1, seed=0, num_videos_per_prompt=2, **SMALL)
    assert isinstance(many, list) and len(many) == 4
    assert np.array_equal(many[2].frames, one.frames)  # prompt "b", its first video: seed 0
    assert not np.array_equal(many[2].frames, many[3].frames)  # its second video: seed 1
    out = pipe(["a", "b"], num_steps=1, num_videos_per_prompt=2, output_type="np", **SMALL)
    assert out.frames.shape == (4, 5, 32, 32, 3)


def test_generator_and_latents(pipe):
    a = pipe("x", num_steps=2, generator=torch.Generator().manual_seed(7), **SMALL)
    b = pipe("x", num_steps=2, seed=7, **SMALL)
    assert np.array_equal(a.frames, b.frames)  # a generator seeded 7 draws what seed=7 draws
    noise = torch.randn(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(7))
    c = pipe("x", num_steps=2, latents=noise, seed=123, **SMALL)
    assert np.array_equal(c.frames, b.frames)
    with pytest.raises(ConfigError, match="latents of shape"):
        pipe("x", num_steps=2, latents=torch.randn(1, 3, 4, 32, 32), **SMALL)


def test_callback_on_step_end_sees_and_replaces_latents(pipe):
    seen = []

    def cb(p, i, t, kw):
        seen.append((i, t, kw["latents"].shape))
        return {"latents": torch.zeros_like(kw["latents"])} if i == 2 else {}

    out = pipe("x", num_steps=3, callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"], **SMALL)
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][2] == (1, 3, 5, 32, 32)
    assert seen[0][1] > seen[1][1] > seen[2][1]  # model timesteps, decreasing
    assert np.all(out.frames == 128)  # the zero latents after the last step decode to mid grey
    with pytest.raises(ConfigError, match="not available"):
        pipe("x", num_steps=1, callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["prompt_embeds"], **SMALL)


@pytest.mark.parametrize("kw, match", [
    (dict(num_steps=2, num_inference_steps=3), "name the same setting"),
    (dict(guidance_scale=2.0, guidance=3.0), "name the same setting"),
    (dict(cross_attention_kwargs={}), "unknown argument 'cross_attention_kwargs'"),
    (dict(output_type="mp4"), "output_type"),
    (dict(seed=-1), r"seed=-1 must be an integer in \[0, 2\^63\)"),
    (dict(seed=3.7), "seed=3.7"),
    (dict(num_steps=True), "num_steps=True must be a positive integer"),
    (dict(prompt=5), "prompt must be a string"),
    (dict(generator=3), "generator must be a torch.Generator"),
])
def test_bad_call_arguments_are_one_clear_error(pipe, kw, match):
    kw = {"prompt": "x", **kw}
    with pytest.raises(ConfigError, match=match):
        pipe(kw.pop("prompt"), **SMALL, **kw)


def test_torch_dtype_to_and_progress_config(capsys):
    p = vdrt.Pipeline.from_pretrained("factorized-tiny", torch_dtype=torch.float64, device="cpu")
    assert p.engine.dtype == torch.float64
    assert p.to("cpu", torch.float32) is p and p.engine.dtype == torch.float32
    p.set_progress_bar_config(disable=True)
    p("x", num_frames=5, height=32, width=32, num_steps=2)
    assert "denoise" not in capsys.readouterr().err
    p.set_progress_bar_config(disable=False)
    p("x", num_frames=5, height=32, width=32, num_steps=2)
    assert "denoise" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="disagree"):
        vdrt.Pipeline.from_pretrained("factorized-tiny", dtype=torch.float32, torch_dtype=torch.float16)


def test_video_is_indexable_iterable_and_an_input(pipe):
    video = pipe("x", num_steps=1, seed=2, **SMALL)
    assert len(video) == 5 and video[1].shape == (32, 32, 3) and len(video[1:4]) == 3
    assert all(np.array_equal(f, video.frames[i]) for i, f in enumerate(video))
    a = pipe("x", mode="extend", video=video, known_frames=2, num_steps=1, seed=3, **SMALL)
    b = pipe("x", mode="extend", video=video.frames, known_frames=2, num_steps=1, seed=3, **SMALL)
    assert np.array_equal(a.frames, b.frames)
    c = pipe("x", mode="i2v", image=video, num_steps=1, seed=3, **SMALL)
    assert np.array_equal(c.frames[0], video.frames[0])  # pixel space: the known first frame survives


def test_diffusers_export_to_video_decodes_to_the_same_frames(pipe, tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("imageio_ffmpeg")
    from diffusers.utils import export_to_video

    from vdrt.io import read_video

    video = vdrt.Pipeline.from_pretrained("vdrt-tiny", device="cpu")("a red circle bouncing", seed=0, progress=False)
    frames = vdrt.Pipeline.from_pretrained("vdrt-tiny", device="cpu")(
        "a red circle bouncing", seed=0, progress=False, output_type="np").frames[0]
    path = export_to_video(list(frames), str(tmp_path / "d.mp4"), fps=8)
    back = read_video(path)
    assert back.shape == video.frames.shape
    err = np.abs(back.astype(float) - video.frames.astype(float))
    psnr = 10 * np.log10(255**2 / (err**2).mean())
    assert psnr > 27, psnr  # H.264 at quality 5 is lossy: measured 30.9 dB; uint8 frames passed as they are: 6.9 dB
