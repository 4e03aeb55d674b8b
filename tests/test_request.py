"""GenerateRequest: typed, validated on construction (no model), resolved against a model's defaults and sizes."""
from __future__ import annotations

import os

import numpy as np
import pytest

from vdrt.errors import ConfigError, MediaError
from vdrt.request import Defaults, GenerateRequest


@pytest.mark.parametrize("kw, match", [
    (dict(num_frames=True), "num_frames=True must be a positive integer"),
    (dict(num_steps=4.0), "num_steps=4.0 must be a positive integer"),
    (dict(num_steps=0), "num_steps=0"),
    (dict(seed=-1), r"\[0, 2\^63\)"),
    (dict(seed=2**63), r"\[0, 2\^63\)"),
    (dict(seed="abc"), "seed='abc'"),
    (dict(seed=None), "seed=None"),
    (dict(guidance=float("inf")), "finite number >= 0"),
    (dict(guidance=float("nan")), "finite number >= 0"),
    (dict(guidance="high"), "guidance='high'"),
    (dict(guidance_range=(0.5, 0.2)), "guidance_range"),
    (dict(shift=0.0), "shift=0.0"),
    (dict(fps=0), "fps=0"),
    (dict(strength=0.0), "strength=0.0"),
    (dict(prompt=None), "prompt must be a string"),
    (dict(prompt=[]), "prompt must be a string"),
    (dict(negative_prompt=3), "negative_prompt must be a string"),
    (dict(mode="warp"), "unknown mode 'warp'"),
    (dict(mode="t2v", mask="m.png"), "does not use mask"),
    (dict(mode="v2v"), "needs an input video"),
    (dict(mode="extend"), "needs an input video"),
    (dict(mode="inpaint", video=np.zeros((2, 8, 8, 3), np.uint8)), "needs a mask"),
    (dict(output_type="gif"), "output_type='gif'"),
    (dict(out="clip.avi"), "unknown suffix '.avi'"),
])
def test_bad_requests_are_refused_on_construction(kw, match):
    with pytest.raises(ConfigError, match=match):
        GenerateRequest(**kw)


def test_media_paths_must_exist(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        GenerateRequest(mode="i2v", image=str(tmp_path / "nope.png"))


def test_output_path_rules(tmp_path):
    (tmp_path / "old.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match="exists; pass --force"):
        GenerateRequest(out=str(tmp_path / "old.mp4"))
    GenerateRequest(out=str(tmp_path / "old.mp4"), force=True)
    GenerateRequest(out=str(tmp_path / "new" / "deeper" / "clip.gif"))  # folders are created when written
    GenerateRequest(out=str(tmp_path / "frames") + "/")
    (tmp_path / "empty").mkdir()
    GenerateRequest(out=str(tmp_path / "empty"))  # an empty folder is not a file to protect
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not a writable folder"):
            GenerateRequest(out=str(ro / "x.mp4"))


def test_resolved_fills_defaults_and_checks_sizes():
    from vdrt.pipeline.codecs import LatentGeometry

    d = Defaults(num_frames=17, height=64, width=64, num_steps=4, guidance=1.0, sampler="fewstep")
    r = GenerateRequest(prompt="x", num_steps=2).resolved(d, LatentGeometry(3, 1, 1, 4))
    assert (r.num_frames, r.height, r.width, r.num_steps, r.guidance, r.sampler) == (17, 64, 64, 2, 1.0, "fewstep")
    with pytest.raises(ConfigError, match="multiple of 16"):
        GenerateRequest(height=40).resolved(d, LatentGeometry(16, 4, 8, 16))
    with pytest.raises(ConfigError, match="4k\\+1"):
        GenerateRequest(num_frames=6).resolved(d, LatentGeometry(16, 4, 8, 16))
    with pytest.raises(ConfigError, match="unknown sampler 'ddim'"):
        GenerateRequest(sampler="ddim").resolved(d)
    trained = Defaults.from_card({"num_frames": 17, "height": 64, "width": 64, "num_steps": 4, "sampler": "fewstep",
                                  "guidance": 1.0, "shift": 1.0, "fps": 8})
    with pytest.raises(ConfigError, match="trained at 17 frames of 64x64"):
        GenerateRequest(num_frames=9).resolved(trained, name="vdrt-tiny")


def test_defaults_come_from_the_config_not_the_name(tmp_path):
    """A small Wan checkpoint without 'tiny' in its name used to get 81 x 480 x 832 x 50 steps."""
    import vdrt
    from vdrt.loader import save_native
    from vdrt.pipeline.sources import WAN_FULL, WAN_SMALL, describe

    save_native(vdrt.load_denoiser("wan-tiny"), tmp_path / "my-wan")
    assert describe(tmp_path / "my-wan").defaults == WAN_SMALL
    assert describe("wan2.1-t2v-1.3b").defaults == WAN_FULL and describe("wan-tiny").defaults == WAN_SMALL
    assert describe("vdrt-tiny").defaults.trained_size == (17, 64, 64)


@pytest.mark.parametrize("kw", [dict(seed=None), dict(seed="abc"), dict(seed=3.7), dict(prompt=None), dict(prompt=5),
                                dict(num_frames=True), dict(guidance="high"), dict(mode=5), dict(force="false"),
                                dict(out=5), dict(mode="i2v", image=5), dict(guidance_range=0.5)])
def test_wrong_types_are_type_errors_too(kw):
    from vdrt.errors import InputTypeError

    with pytest.raises(InputTypeError) as e:
        GenerateRequest(**kw)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ConfigError) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw, match", [
    (dict(num_steps=10**11), "num_steps=100000000000 is above the limit of 1000"),
    (dict(num_videos=100000), "above the limit of 1024"),
    (dict(prompt=["a"] * 600, num_videos=2), "600 prompts x num_videos=2"),
    (dict(height=10**6), "height=1000000 is above the limit"),
    (dict(seed=2**64), r"\[0, 2\^63\)"),
])
def test_absurd_counts_are_refused_by_the_request(kw, match):
    with pytest.raises(ConfigError, match=match):
        GenerateRequest(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(strength=0.5), "mode t2v does not use strength; drop it, or choose a mode that does \\(v2v\\)"),
    (dict(known_frames=3), "mode t2v does not use known_frames.*\\(continue, extend\\)"),
    (dict(mode="i2v", image=np.zeros((8, 8, 3), np.uint8), strength=0.5), "mode i2v does not use strength"),
    (dict(image=np.zeros((8, 8, 3), np.uint8)), "mode t2v does not use image"),
])
def test_an_input_of_another_mode_is_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        GenerateRequest(**kw)


def test_strength_defaults_to_0_8_in_v2v_only_and_negative_prompt_at_guidance_1_is_logged(caplog):
    d = Defaults(guidance=1.0)
    video = np.zeros((2, 8, 8, 3), np.uint8)
    assert GenerateRequest(mode="v2v", video=video).resolved(d).strength == 0.8
    assert GenerateRequest().resolved(d).strength is None
    with caplog.at_level("WARNING", logger="vdrt.request"):
        GenerateRequest(negative_prompt="blurry").resolved(d)
    assert "negative prompt is not used: guidance is 1" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vdrt.request"):
        GenerateRequest(negative_prompt="blurry", guidance=5.0).resolved(d)
    assert caplog.text == ""
