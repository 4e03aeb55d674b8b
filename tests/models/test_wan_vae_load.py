"""Loading the Wan VAE from a diffusers directory (config.json + safetensors) and from random weights."""
from __future__ import annotations

import json

import pytest
import torch

from vdrt.errors import CheckpointError, ConfigError
from vdrt.models.wan_vae import WanVAEConfig
from vdrt.models.wan_vae.fast import FastOptions
from vdrt.models.wan_vae.load import default_options, load_wan_vae, random_wan_vae

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = WanVAEConfig.from_name("wan-vae-tiny")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A diffusers AutoencoderKLWan (perturbed weights) saved as a pipeline folder's vae/ (safetensors)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKLWan(**TINY.to_diffusers()).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(1 + 0.2 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("pipe")
    ref.save_pretrained(root / "vae", safe_serialization=True)
    return root, ref


def test_load_matches_diffusers(saved):
    root, ref = saved
    vae = load_wan_vae(root, dtype="float32", device="cpu")  # resolves root/vae
    assert vae.config == TINY
    z = torch.randn(1, TINY.z_dim, 3, 2, 3)
    with torch.no_grad():
        want = ref.decode(z).sample
    got = vae.decode(z)
    assert ((got - want).norm() / want.norm()).item() < 1e-5


def test_codec_style_round_trip(saved):
    """What WanVAECodec does: normalise the posterior mean, and denormalise before decoding."""
    root, ref = saved
    vae = load_wan_vae(root / "vae", dtype="float32", device="cpu")
    video = torch.rand(3, 5, 16, 24) * 2 - 1
    z = vae.normalize(vae.encode(video[None]))[0]  # (z, F, h, w)
    with torch.no_grad():
        mu = ref.encode(video[None]).latent_dist.mode()
    mean = torch.tensor(TINY.latents_mean).view(-1, 1, 1, 1)
    std = torch.tensor(TINY.latents_std).view(-1, 1, 1, 1)
    assert torch.allclose(z, (mu[0] - mean) / std, atol=1e-5)
    assert vae.decode(vae.denormalize(z[None])).shape == (1, 3, 5, 16, 24)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a diffusers VAE directory"):
        load_wan_vae(tmp_path / "nope", device="cpu")


def test_wrong_class(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(CheckpointError, match="holds a AutoencoderKL, not an AutoencoderKLWan"):
        load_wan_vae(tmp_path, device="cpu")


def test_unsupported_vae(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", "is_residual": True}))
    with pytest.raises(ConfigError, match="is_residual=True is not supported"):
        load_wan_vae(tmp_path, device="cpu")


def test_weights_that_do_not_fit(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    root, _ = saved
    state = load_file(str(root / "vae" / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "config.json").write_text((root / "vae" / "config.json").read_text())
    del state["decoder.conv_out.bias"]
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys \\[decoder.conv_out.bias\\]"):
        load_wan_vae(tmp_path, device="cpu")


def test_random_is_seeded():
    a, b = (random_wan_vae("wan-vae-tiny", seed=5, dtype="float32") for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))
    assert a.config == TINY


def test_default_options():
    assert default_options(torch.bfloat16, "cpu") == FastOptions(dtype="bfloat16", channels_last=False,
                                                                 cudnn_benchmark=False)
    assert default_options("float32", "cuda").channels_last
