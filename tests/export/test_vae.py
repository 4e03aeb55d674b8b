"""export_decoder: the Wan VAE decoder as two AOTInductor packages + shared weights, loaded back by
vdrt.engines.vae_decoder, decoding like the eager VAE (a short tail padded), refusing tampered or
foreign directories and latents of another size."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from vdrt.errors import ConfigError, EngineError
from vdrt.models.wan_vae import WanVAE, WanVAEConfig
from vdrt.engines.vae_decoder import MANIFEST, STEP, load_compiled_decoder
from vdrt.models.wan_vae.fast import FastOptions, FastWanVAE

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
# one up stage (2x space, 2x causal time): the same code paths as Wan2.1's, a third of the kernels to compile
MICRO = WanVAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2), num_res_blocks=1, temperal_downsample=(True,),
                     latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from vdrt.export.vae import export_decoder

    torch.manual_seed(0)
    model = WanVAE(MICRO).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.2 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("engine") / "vae"
    vae = FastWanVAE(copy.deepcopy(model), FastOptions(dtype="float32", chunk=2))  # channels-last weights
    manifest = export_decoder(vae, out, latent_size=(3, 4))
    return model, out, manifest


def test_compiled_decoder_matches_eager(built):
    model, out, manifest = built
    assert manifest["chunk"] == 2 and manifest["latent_size"] == [3, 4]
    dec = load_compiled_decoder(out)
    z = torch.randn(1, MICRO.z_dim, 5, 3, 4)  # 1 + 2 + 2 ... and 1 + 2 + 1 (a padded tail) below
    for f in (5, 4):
        want = model.decode(z[:, :, :f], chunk=1)
        got = dec.decode(z[:, :, :f])
        assert got.shape == want.shape
        assert ((got - want).norm() / want.norm()).item() < 1e-5
    frames = torch.cat(list(dec.frames_stream(z)))
    assert frames.shape == (9, 6, 8, 3) and frames.dtype == torch.uint8


def test_refuses_other_latent_sizes(built):
    _, out, _ = built
    with pytest.raises(ConfigError, match=r"takes latents \(1, 4, F, 3, 4\)"):
        load_compiled_decoder(out).decode(torch.randn(1, MICRO.z_dim, 3, 4, 4))


def test_refuses_tampered_artifacts(built, tmp_path):
    import shutil

    _, out, _ = built
    copy = tmp_path / "vae"
    shutil.copytree(out, copy)
    with open(copy / f"{STEP}.pt2", "ab") as f:
        f.write(b"x")
    with pytest.raises(EngineError, match="does not match its sha256"):
        load_compiled_decoder(copy)


def test_refuses_foreign_directories(built, tmp_path):
    _, out, _ = built
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EngineError, match="is not 'vdrt-wan-vae-decoder/1'"):
        load_compiled_decoder(tmp_path)
    with pytest.raises(EngineError, match="is unreadable"):
        load_compiled_decoder(tmp_path / "missing")


def test_refuses_a_bad_latent_size(built):
    from vdrt.export.vae import export_decoder

    model, _, _ = built
    with pytest.raises(ConfigError, match="latent_size"):
        export_decoder(FastWanVAE(model, FastOptions(dtype="float32")), "unused", latent_size=(0, 4))
