"""load_denoiser: presets, vdrt checkpoints, diffusers directories (single and sharded), and refusals."""
from __future__ import annotations

import json
import logging

import pytest
import torch

import vdrt
from vdrt.errors import CheckpointError, ConfigError
from vdrt.loader import save_native


def _inputs(cfg, f=3, h=8, w=8):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, cfg.in_channels, f, h, w, generator=g), torch.tensor([321.0]),
            torch.randn(1, 7, cfg.text_dim, generator=g))


def test_preset_says_random_weights(caplog):
    with caplog.at_level(logging.INFO, logger="vdrt.loader"):
        den = vdrt.load_denoiser("wan-tiny")
    assert "RANDOM weights" in caplog.text
    assert not den.training and not any(p.requires_grad for p in den.parameters())


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="wan2.1-t2v-1.3b") as e:
        vdrt.load_denoiser("wan2.1-t2v-9b")
    assert "factorized-tiny" in str(e.value)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        vdrt.load_denoiser(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read JSON"):
        vdrt.load_denoiser(tmp_path)
    with pytest.raises(CheckpointError, match="no such directory"):
        vdrt.load_denoiser(tmp_path / "nope")


def test_native_roundtrip_gives_identical_outputs(tmp_path):
    den = vdrt.load_denoiser("factorized-tiny")
    with torch.no_grad():
        for p in den.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_native(den, tmp_path / "ck")
    back = vdrt.load_denoiser(tmp_path / "ck")
    x = _inputs(den.config)
    assert torch.equal(den(*x), back(*x))


@pytest.fixture(scope="module")
def diffusers_wan(tmp_path_factory):
    """A tiny diffusers WanTransformer3DModel saved with save_pretrained, sharded."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                              out_channels=4, text_dim=24, freq_dim=32, ffn_dim=48, num_layers=2,
                              rope_max_seq_len=64).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("wan") / "transformer"
    m.save_pretrained(d, max_shard_size="60KB")
    return m, d


def test_diffusers_sharded_directory_matches_diffusers(diffusers_wan):
    ref, d = diffusers_wan
    assert len(list(d.glob("*.safetensors"))) > 1 and list(d.glob("*.index.json"))
    den = vdrt.load_denoiser(d)
    x, t, c = _inputs(den.config, f=3, h=6, w=10)
    with torch.no_grad():
        want = ref(x, t, c, return_dict=False)[0]
    got = den(x, t, c)
    err = ((got - want).norm() / want.norm()).item()
    assert err <= 1e-5, err


def test_diffusers_pipeline_root_uses_transformer_folder(diffusers_wan, tmp_path):
    _, d = diffusers_wan
    (d.parent / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    assert vdrt.load_denoiser(d.parent).config.family == "wan"


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_and_unexpected_keys_are_named(diffusers_wan, tmp_path):
    from safetensors.torch import load_file, save_file

    _, d = diffusers_wan
    one = tmp_path / "one"
    one.mkdir()
    (one / "config.json").write_text((d / "config.json").read_text())
    state = {}
    for f in d.glob("*.safetensors"):
        state.update(load_file(f))
    dropped = sorted(state)[0]
    save_file({k: v for k, v in state.items() if k != dropped} | {"blocks.0.mystery.weight": torch.ones(2)},
              one / "model.safetensors")
    with pytest.raises(CheckpointError, match="mystery"):
        vdrt.load_denoiser(one)


def test_shape_mismatch_is_named(tmp_path):
    den = vdrt.load_denoiser("factorized-tiny")
    save_native(den, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["dim"] = cfg["dim"] * 2
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shapes do not match"):
        vdrt.load_denoiser(tmp_path / "ck")


def test_pickle_needs_the_trust_flag(tmp_path):
    den = vdrt.load_denoiser("factorized-tiny")
    d = tmp_path / "pk"
    d.mkdir()
    (d / "config.json").write_text(den.config.to_json())
    torch.save(den.state_dict(), d / "model.bin")
    with pytest.raises(CheckpointError, match="trust_pickle"):
        vdrt.load_denoiser(d)
    back = vdrt.load_denoiser(d, trust_pickle=True)
    x = _inputs(den.config)
    assert torch.equal(den(*x), back(*x))


def test_corrupt_safetensors(tmp_path):
    den = vdrt.load_denoiser("factorized-tiny")
    save_native(den, tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        vdrt.load_denoiser(tmp_path / "ck")


def test_engine_dir_is_pointed_to_load_engine(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="load_engine"):
        vdrt.load_denoiser(tmp_path)


def test_latte_learned_sigma_checkpoint_keeps_the_noise_half(tmp_path):
    from diffusers import LatteTransformer3DModel

    torch.manual_seed(0)
    ref = LatteTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                  num_layers=1, sample_size=8, patch_size=2, cross_attention_dim=16, norm_type="ada_norm_single",
                                  caption_channels=12, video_length=3, norm_elementwise_affine=False,
                                  activation_fn="gelu-approximate").eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "latte")
    den = vdrt.load_denoiser(tmp_path / "latte")
    assert den.config.out_channels == 4
    x, t, c = torch.randn(1, 4, 3, 8, 8), torch.tensor([400.0]), torch.randn(1, 5, 12)
    with torch.no_grad():
        want = ref(x, timestep=t, encoder_hidden_states=c, return_dict=False)[0][:, :4]
    err = ((den(x, t, c) - want).norm() / want.norm()).item()
    assert err <= 1e-5, err
