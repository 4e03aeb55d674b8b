"""Shape profiles: CLI MIN:OPT:MAX parsing, pixel -> latent conversion with the model's factors, validation."""
from __future__ import annotations

import pytest
import torch
from vdrt.export import shapes as sh

import vdrt
from vdrt.errors import ConfigError


def cfg(name):
    return vdrt.models.config_from_name(name)


@pytest.mark.parametrize("text, want", [("5:9:17", (5, 9, 17)), ("8", (8, 8, 8)), (" 1:2:3", (1, 2, 3))])
def test_parse_triple(text, want):
    assert sh.parse_triple("frames", text) == want


@pytest.mark.parametrize("text", ["abc", "1:2", "1:2:3:4", "1.5:2:3", ""])
def test_parse_triple_names_the_format(text):
    with pytest.raises(ConfigError, match=r"--frames expects MIN:OPT:MAX \(e\.g\. 5:9:17\)"):
        sh.parse_triple("frames", text)


def test_wan_pixels_to_latents():
    got = sh.shapes_from_pixels(cfg("wan2.1-t2v-1.3b"), "49:81:81", "240:480:480", "416:832:832")
    assert got == {"frames": (13, 21, 21), "height": (30, 60, 60), "width": (52, 104, 104)}


@pytest.mark.parametrize("flag, value, match", [
    ("frames", "10", r"4k\+1 frames \(e\.g\. 9 or 13\)"),
    ("height", "100", r"multiple of 16 pixels \(VAE factor 8 x patch 2\)"),
    ("width", "840", r"multiple of 16 pixels"),
])
def test_wan_bad_pixels_name_the_multiple(flag, value, match):
    sizes = {"frames": "81", "height": "480", "width": "832", flag: value}
    with pytest.raises(ConfigError, match=match):
        sh.shapes_from_pixels(cfg("wan2.1-t2v-1.3b"), sizes["frames"], sizes["height"], sizes["width"])


def test_pixel_space_model_is_one_to_one_with_patch_multiples():
    c = cfg("factorized-tiny")  # pixel space, patch 4
    assert sh.shapes_from_pixels(c, "1:5:9", "16:32:64", "32") == {"frames": (1, 5, 9), "height": (16, 32, 64),
                                                                   "width": (32, 32, 32)}
    with pytest.raises(ConfigError, match=r"multiple of 4 pixels \(VAE factor 1 x patch 4\)"):
        sh.shapes_from_pixels(c, "5", "30", "32")


def test_pixel_space_wan_model_is_one_to_one():
    """A Wan-family model on pixels (3 channels: the embedded vdrt-tiny-wan-teacher) has no VAE between."""
    import dataclasses

    c = dataclasses.replace(cfg("wan-tiny"), in_channels=3, out_channels=3, patch_size=(1, 8, 8))
    assert sh.shapes_from_pixels(c, "17", "64", "64:96:128") == {"frames": (17, 17, 17), "height": (64, 64, 64),
                                                               "width": (64, 96, 128)}


def test_latent_factorized_model_uses_the_vae_factor():
    c = cfg("latte-like")  # 4 latent channels, patch 2, SD VAE /8
    assert sh.shapes_from_pixels(c, "16", "256:512:512", "512")["height"] == (32, 64, 64)


def test_profile_defaults_and_validation():
    c = cfg("wan-tiny")
    p = sh.profile(c, {"frames": (1, 3, 5), "height": (4, 8, 16), "width": 8})
    assert p["batch"].to_dict() == {"min": 1, "opt": 2, "max": 2, "multiple": 1}
    assert (p["text_len"].min, p["text_len"].max) == (1, c.text_len)
    assert p["width"].dynamic is False and p["height"].multiple == 2
    with pytest.raises(ConfigError, match="rope_max_seq_len"):
        sh.profile(c, {"frames": 1, "height": (4, 8, 4096), "width": 8})
    with pytest.raises(ConfigError, match="max_frames=32"):
        sh.profile(cfg("factorized-tiny"), {"frames": (1, 8, 40), "height": 16, "width": 16})
    with pytest.raises(ConfigError, match="unknown shape dims"):
        sh.profile(c, {"frames": 1, "height": 8, "width": 8, "depth": 2})


@pytest.mark.parametrize("r, want", [((1, 1, 2, 1), 2), ((4, 16, 32, 2), 16), ((2, 2, 8, 2), 4), ((3, 3, 3, 1), 3)])
def test_example_sizes_avoid_0_1_specialization(r, want):
    assert sh.Range(*r).example() == want


def test_export_dims_put_a_dim_on_the_patch_count():
    c = cfg("wan-tiny")
    p = sh.profile(c, {"frames": (1, 3, 5), "height": (4, 8, 16), "width": 8, "batch": 1})
    inputs, _ = sh.signature(c, torch.float32)
    dims = sh.export_dims(inputs, p)
    lat = dims[0]
    assert set(lat) == {2, 3}  # batch and width static, channels static
    assert lat[3].__name__ == "2*height_patches" and (lat[3].root.min, lat[3].root.max) == (2, 8)
    assert (lat[2].min, lat[2].max) == (1, 5)
    assert dims[1] is None  # timestep: static batch
