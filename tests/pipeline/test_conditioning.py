"""Every conditioning mode: the known content survives exactly (pixel space) and the rest is generated."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vdrt
from vdrt.pipeline.sources import ModelInfo, Parts
from vdrt.errors import ConfigError

from pipeline_helpers import CountingEngine

T, H, W = 5, 32, 32


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, H, W, 3))
    drift = np.arange(T)[:, None, None, None] * 7
    return ((base + drift) % 256).astype(np.uint8)  # (T, H, W, 3), every frame different


def run(pipe, num_steps=2, **kw):
    kw = {"num_frames": T, "height": H, "width": W, **kw}
    return pipe("a red circle", num_steps=num_steps, progress=False, seed=3, **kw).frames


def test_i2v_keeps_the_first_frame(tiny_pipe, clip):
    out = run(tiny_pipe, mode="i2v", image=clip[0])
    assert np.array_equal(out[0], clip[0])
    assert not np.array_equal(out[1], clip[1])


def test_extend_keeps_the_first_k_frames(tiny_pipe, clip):
    out = run(tiny_pipe, mode="extend", video=clip, known_frames=3)
    assert np.array_equal(out[:3], clip[:3])
    assert np.abs(out[3:].astype(int) - clip[3:]).mean() > 5


def test_extend_refuses_k_beyond_the_clip(tiny_pipe, clip):
    with pytest.raises(ConfigError, match="known_frames"):
        run(tiny_pipe, mode="extend", video=clip, known_frames=T)


def test_interpolate_keeps_first_and_last(tiny_pipe, clip):
    out = run(tiny_pipe, mode="interpolate", video=clip)
    assert np.array_equal(out[0], clip[0]) and np.array_equal(out[-1], clip[-1])
    assert not np.array_equal(out[2], clip[2])
    out2 = run(tiny_pipe, mode="interpolate", image=(clip[0], clip[-1]))
    assert np.array_equal(out2[0], clip[0]) and np.array_equal(out2[-1], clip[-1])


def test_inpaint_keeps_everything_outside_the_mask(tiny_pipe, clip):
    mask = np.zeros((H, W), bool)
    mask[8:20, 4:28] = True
    out = run(tiny_pipe, mode="inpaint", video=clip, mask=mask)
    assert np.array_equal(out[:, ~mask], clip[:, ~mask])
    assert np.abs(out[:, mask].astype(int) - clip[:, mask]).mean() > 5


def test_outpaint_default_border_keeps_the_centre(tiny_pipe, clip):
    out = run(tiny_pipe, mode="outpaint", video=clip)
    centre = (slice(None), slice(H // 4, -(H // 4)), slice(W // 4, -(W // 4)))
    assert np.array_equal(out[centre], clip[centre])
    assert not np.array_equal(out[:, :4], clip[:, :4])


def test_v2v_strength_controls_how_far_it_moves(tiny_pipe, clip):
    near = run(tiny_pipe, mode="v2v", video=clip, strength=0.25, num_steps=4)
    far = run(tiny_pipe, mode="v2v", video=clip, strength=1.0, num_steps=4)
    d = lambda a: np.abs(a.astype(int) - clip).mean()  # noqa: E731
    assert d(near) < d(far)
    assert d(near) > 0


def test_native_conditioning_channels_get_known_frames_and_keep_mask(clip):
    from vdrt import models
    from vdrt.pipeline.codecs import PixelCodec
    from vdrt.pipeline.encoders import HashTextEncoder
    from vdrt.engines.torch import TorchEngine
    from vdrt.request import Defaults

    cfg = models.config_from_name("factorized-tiny").replace(cond_channels=4)
    torch.manual_seed(0)
    engine = CountingEngine(TorchEngine(models.build_model(cfg).eval()))
    seen = []
    inner = engine.engine.module.forward

    def spy(latents, timestep, context, cond=None):
        seen.append(cond.clone())
        return inner(latents, timestep, context, cond=cond)

    engine.engine.module.forward = spy
    pipe = vdrt.Pipeline(Parts(engine, PixelCodec(4), HashTextEncoder(cfg.text_dim),
                               ModelInfo("test", "test", cfg, Defaults())))
    out = run(pipe, mode="i2v", image=clip[0])
    cond = seen[0]  # (1, C+1, F, H, W): [known * keep, keep]
    assert cond.shape == (1, 4, T, H, W)
    assert torch.all(cond[0, 3, 0] == 1) and torch.all(cond[0, 3, 1:] == 0)
    assert torch.allclose(cond[0, :3, 0], torch.from_numpy(clip[0]).permute(2, 0, 1).float() / 127.5 - 1, atol=1e-6)
    assert out.shape == (T, H, W, 3)
    seen.clear()
    run(pipe)  # t2v: all-zero conditioning
    assert torch.count_nonzero(seen[0]) == 0


def test_wan_i2v_uses_its_native_channels_and_image_embeddings(clip):
    pipe = vdrt.Pipeline.from_pretrained("wan-tiny-i2v", device="cpu")
    pipe.engine = CountingEngine(pipe.engine)
    dim = pipe.config.image_dim
    out = run(pipe, mode="i2v", image=clip[0], image_embeds=torch.randn(1, 257, dim))
    assert out.shape == (T, H, W, 3)
    assert pipe.engine.calls[0]["cond"] == ["cond", "image_embeds"]
    with pytest.raises(ConfigError, match="image embeddings"):
        run(pipe, mode="i2v", image=clip[0])


# ---------------------------------------------------------------- the modes of issue 12 (generic: pasted)


def test_continue_starts_with_the_last_k_frames(tiny_pipe, clip):
    out = run(tiny_pipe, mode="continue", video=clip, known_frames=2)
    assert np.array_equal(out[:2], clip[-2:])
    assert np.abs(out[2:].astype(int) - clip[2:]).mean() > 5


def test_slowmo_keeps_the_input_every_m_frames(tiny_pipe, clip):
    three = clip[:3]
    out = tiny_pipe("x", mode="slowmo", video=three, height=H, width=W, num_steps=2, progress=False).frames
    assert out.shape[0] == 5 and np.array_equal(out[::2], three)  # x2 by default: 2 * (3 - 1) + 1 frames
    assert not np.array_equal(out[1], three[0]) and not np.array_equal(out[1], three[1])


def test_per_frame_masks_keep_each_frame_outside_its_mask(tiny_pipe, clip):
    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        masks[t, 4:16, 4 * t: 4 * t + 12] = True
    out = run(tiny_pipe, mode="remove", video=clip, mask=masks)
    assert np.array_equal(out[~masks], clip[~masks])
    assert np.abs(out[masks].astype(int) - clip[masks]).mean() > 5
    out2 = run(tiny_pipe, mode="inpaint", video=clip, mask=masks)  # inpaint takes per-frame masks too
    assert np.array_equal(out2[~masks], clip[~masks])


def test_a_video_of_masks_is_read_per_frame(tiny_pipe, clip, tmp_path):
    from vdrt import io

    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        masks[t, 8:24, 2 * t: 2 * t + 16] = True  # every frame different (a GIF merges equal frames)
    io.Video(np.repeat((masks * 255).astype(np.uint8)[..., None], 3, -1), fps=8).save(tmp_path / "m.gif")
    out = run(tiny_pipe, mode="remove", video=clip, mask=str(tmp_path / "m.gif"))
    assert np.array_equal(out[~masks], clip[~masks])


def test_grow_keeps_the_input_centred(tiny_pipe, clip):
    narrow = clip[:, :, 8:24]  # 32 x 16 -> 32 x 32
    out = run(tiny_pipe, mode="grow", video=narrow)
    assert np.array_equal(out[:, :, 8:24], narrow)
    assert np.abs(out[:, :, :8].astype(int) - clip[:, :, :8]).mean() > 5


def test_story_continues_chunk_after_chunk_lazily(tiny_pipe):
    asked = []

    def prompts():  # an interactive story: the next prompt is asked for only when the next chunk is
        for p in ("a red circle moving right", "a red circle falling", "a red circle moving up"):
            asked.append(p)
            yield p

    story = tiny_pipe.story(prompts(), known_frames=2, num_frames=T, height=H, width=W, num_steps=2, progress=False)
    first = next(story)
    assert len(asked) == 1 and first.frames.shape == (T, H, W, 3)
    second = next(story)
    assert np.array_equal(second.frames[:2], first.frames[-2:]) and len(asked) == 2
    third = next(story)
    assert np.array_equal(third.frames[:2], second.frames[-2:])
    assert not np.array_equal(third.frames[2:], second.frames[2:])
    with pytest.raises(ConfigError, match="story\\(\\) sets mode itself"):
        next(tiny_pipe.story(["x"], mode="extend"))


@pytest.mark.parametrize("kw, match", [
    ({"mode": "continue"}, "needs an input video"),
    ({"mode": "remove", "video": "VIDEO"}, "needs a mask"),
    ({"mode": "slowmo", "video": "VIDEO", "num_frames": 6}, "whole frame-rate factor"),
    ({"mode": "grow", "video": "VIDEO"}, "must be smaller than"),
    ({"mode": "upscale", "video": "VIDEO"}, "upscale needs a model trained for it"),
])
def test_new_modes_refuse_bad_input(tiny_pipe, clip, kw, match):
    kw = {k: clip if v == "VIDEO" else v for k, v in kw.items()}
    with pytest.raises(ConfigError, match=match):
        run(tiny_pipe, **kw)
