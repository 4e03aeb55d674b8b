"""Native conditioning layouts (v1, v2, Wan I2V) and the v2 cards' modes: the channels every mode sends, and
the trained size range. A random-init v2 card (the vdrt-tiny-wan architecture, tiny) is enough for the wiring."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vdrt
from vdrt import embedded, models
from vdrt.errors import CheckpointError, ConfigError
from vdrt.pipeline import native

T, H, W = 9, 64, 64


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory):
    """A card like vdrt-tiny-wan's (family wan, 8 conditioning channels, a trained range), random weights."""
    from vdrt.export.tiny import arch, common
    from vdrt.export.tiny.quality.cards import build_models
    from vdrt.export.tiny.trainer import named_parameters

    out = tmp_path_factory.mktemp("v2card")
    config, text = arch.sections("wan", {"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64},
                                 {"dim": 32, "layers": 1, "heads": 2})
    den, txt = build_models(config, text)
    torch.nn.init.normal_(den.head.head.weight, std=0.02)  # zero-initialised: the output would not depend on cond
    defaults = {"num_frames": 17, "height": 64, "width": 64, "num_steps": 2, "sampler": "euler", "guidance": 1.0,
                "shift": 1.0, "fps": 8}
    extras = {"cond_layout": "vdrt-native-v2", "trained_range": {"frames": [9, 33], "side": [64, 128], "multiple": 8}}
    common.write_card(out, "test-v2", named_parameters(den, txt.encoder), config, text, defaults, {}, extras)
    return out


@pytest.fixture
def v2_pipe(v2_dir, monkeypatch):
    monkeypatch.setenv("VDRT_WEIGHTS_DIR", str(v2_dir))
    embedded.card.cache_clear()
    pipe = vdrt.Pipeline.from_pretrained("test-v2", device="cpu")
    seen = []
    inner = pipe.engine.module.forward

    def spy(latents, timestep, context, cond=None):
        seen.append(cond.clone())
        return inner(latents, timestep, context, cond=cond)

    pipe.engine.module.forward = spy
    pipe.seen = seen
    yield pipe
    embedded.card.cache_clear()


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def px(frames) -> torch.Tensor:  # uint8 (T, H, W, 3) -> (3, T, H, W) in [-1, 1]
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1


def run(pipe, **kw):
    pipe.seen.clear()
    kw = {"num_frames": T, "height": H, "width": W, "num_steps": 1, "progress": False, **kw}
    out = pipe("a red circle bouncing", **kw)
    return out.frames, pipe.seen[0][0]  # (8, F, H, W)


# ---------------------------------------------------------------- layouts


def test_layout_follows_the_config():
    tiny = models.config_from_name("factorized-tiny")
    assert native.layout(tiny) is None
    assert native.layout(tiny.replace(cond_channels=4)) == "vdrt-native-v1"
    assert native.layout(tiny.replace(cond_channels=8)) == "vdrt-native-v2"
    assert native.layout(models.config_from_name("wan-tiny-i2v")) == "wan-i2v"
    wan_px = models.config_from_name("wan-tiny").replace(in_channels=3, out_channels=3, cond_channels=8)
    assert native.layout(wan_px) == "vdrt-native-v2"  # family wan with 8 channels is NOT Wan I2V
    with pytest.raises(ConfigError, match="cond_channels=5"):
        native.layout(tiny.replace(cond_channels=5))


def test_a_card_naming_another_layout_is_refused(v2_dir, tmp_path, monkeypatch):
    card = json.loads((v2_dir / "test-v2.json").read_text())
    (tmp_path / "bad-v2.json").write_text(json.dumps({**card, "name": "bad-v2", "cond_layout": "vdrt-native-v1"}))
    (tmp_path / card["weights"]).write_bytes((v2_dir / card["weights"]).read_bytes())
    monkeypatch.setenv("VDRT_WEIGHTS_DIR", str(tmp_path))
    embedded.card.cache_clear()
    try:
        with pytest.raises(CheckpointError, match="cond_layout 'vdrt-native-v1' but its config has 'vdrt-native-v2'"):
            vdrt.Pipeline.from_pretrained("bad-v2", device="cpu")
    finally:
        embedded.card.cache_clear()


# ---------------------------------------------------------------- v2 channels per mode


def test_t2v_sends_zeros_and_the_output_depends_on_cond(v2_pipe, clip):
    out, cond = run(v2_pipe)
    assert cond.shape == (8, T, H, W) and torch.count_nonzero(cond) == 0
    out_i2v, _ = run(v2_pipe, mode="i2v", image=clip[0])
    assert not np.array_equal(out, out_i2v)


def test_keep_modes_fill_known_and_keep_without_pasting(v2_pipe, clip):
    _, cond = run(v2_pipe, mode="extend", video=clip, known_frames=3)
    assert torch.all(cond[3, :3] == 1) and torch.all(cond[3, 3:] == 0) and torch.count_nonzero(cond[4:]) == 0
    torch.testing.assert_close(cond[:3, :3], px(clip[:3]), atol=1e-6, rtol=0)
    assert not native.replaces_latents(v2_pipe.config, type("C", (), {"keep": cond[3:4], "mode": "extend"})())


def test_continue_keeps_the_last_k_frames_as_the_first(v2_pipe, clip):
    _, cond = run(v2_pipe, mode="continue", video=clip, known_frames=2)
    torch.testing.assert_close(cond[:3, :2], px(clip[-2:]), atol=1e-6, rtol=0)
    assert torch.all(cond[3, :2] == 1) and torch.all(cond[3, 2:] == 0)


def test_slowmo_places_the_input_every_m_frames(v2_pipe, clip):
    five = clip[:5]
    out, cond = run(v2_pipe, mode="slowmo", video=five, num_frames=None)  # x2 by default: 2 * 4 + 1 frames
    assert out.shape[0] == 9 and torch.all(cond[3, ::2] == 1) and torch.all(cond[3, 1::2] == 0)
    torch.testing.assert_close(cond[:3, ::2], px(five), atol=1e-6, rtol=0)
    _, cond4 = run(v2_pipe, mode="slowmo", video=clip[:3], num_frames=9)  # x4
    assert cond4[3, :, 0, 0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    with pytest.raises(ConfigError, match="whole frame-rate factor"):
        run(v2_pipe, mode="slowmo", video=five, num_frames=10)


def test_upscale_sends_the_half_size_clip_as_a_hint(v2_pipe, clip):
    low = clip[:, ::2, ::2]  # (T, 32, 32, 3)
    out, cond = run(v2_pipe, mode="upscale", video=low, height=None, width=None, num_frames=None)
    assert out.shape == (T, 64, 64, 3)  # 2x the input by default
    want = torch.nn.functional.interpolate(px(low)[None], scale_factor=(1, 2, 2), mode="nearest")[0]
    torch.testing.assert_close(cond[4:7], want, atol=1e-6, rtol=0)
    assert torch.all(cond[7] == 1) and torch.count_nonzero(cond[:4]) == 0


def test_v2v_sends_the_video_as_a_hint(v2_pipe, clip):
    _, cond = run(v2_pipe, mode="v2v", video=clip, strength=1.0)
    torch.testing.assert_close(cond[4:7], px(clip), atol=1e-6, rtol=0)
    assert torch.all(cond[7] == 1) and torch.count_nonzero(cond[3]) == 0


def test_remove_takes_one_mask_per_frame(v2_pipe, clip):
    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        masks[t, 8:24, 4 * t: 4 * t + 16] = True  # a box that moves
    _, cond = run(v2_pipe, mode="remove", video=clip, mask=masks)
    torch.testing.assert_close(cond[3], torch.from_numpy(~masks).float())
    with pytest.raises(vdrt.errors.MediaError, match="one per frame"):
        run(v2_pipe, mode="remove", video=clip, mask=masks[:4])


def test_grow_centres_the_input_in_the_larger_canvas(v2_pipe, clip):
    narrow = clip[:, :, :40]  # 64 x 40 -> 64 x 64
    out, cond = run(v2_pipe, mode="grow", video=narrow)
    assert out.shape == (T, 64, 64, 3)
    assert torch.all(cond[3, :, :, 12:52] == 1)
    assert torch.all(cond[3, :, :, :12] == 0) and torch.all(cond[3, :, :, 52:] == 0)
    torch.testing.assert_close(cond[:3, :, :, 12:52], px(narrow), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="must be smaller than the 64x64 canvas"):
        run(v2_pipe, mode="grow", video=clip)


# ---------------------------------------------------------------- sizes


def test_sizes_inside_the_trained_range_run_and_outside_are_refused(v2_pipe):
    out, _ = run(v2_pipe, num_frames=33, height=64, width=96)
    assert out.shape == (33, 64, 96, 3)
    for bad in ({"num_frames": 35}, {"num_frames": 5}, {"height": 136}, {"width": 72 - 4}, {"height": 56}):
        with pytest.raises(ConfigError, match=r"trained at 9\.\.33 frames and 64\.\.128 px a side \(multiples of 8\)"):
            run(v2_pipe, **bad)


# ---------------------------------------------------------------- modes a model cannot run


def test_upscale_needs_a_v2_model(tiny_pipe, clip):
    with pytest.raises(ConfigError, match="upscale needs a model trained for it"):
        tiny_pipe("x", mode="upscale", video=clip[:, ::2, ::2], progress=False)


def test_slowmo_is_refused_for_a_vae_model(clip):
    cfg = models.config_from_name("wan-tiny")
    with pytest.raises(ConfigError, match="slowmo keeps single frames"):
        native.check_mode(cfg, "slowmo")
