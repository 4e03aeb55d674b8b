"""The factorized (Latte-style) DiT: exact parity with diffusers' LatteTransformer3DModel, the
checkpoint mapping, cond channels, presets, torch.export, and that temporal attention really
goes through `vdrt.ops.temporal_attention`."""
from __future__ import annotations

import pytest
import torch

from vdrt import ops
from vdrt.errors import CheckpointError, ConfigError
from vdrt.models import latte_convert
from vdrt.models.factorized import FactorizedConfig, FactorizedModel

diffusers = pytest.importorskip("diffusers")

SMALL = dict(  # a small Latte in diffusers' terms: 3 heads x 8, 2 layers, odd channel counts
    num_attention_heads=3, attention_head_dim=8, in_channels=3, out_channels=3, num_layers=2,
    cross_attention_dim=24, attention_bias=True, sample_size=8, patch_size=2, activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    caption_channels=10, video_length=8,
)
LATTE_1 = dict(SMALL, num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
               cross_attention_dim=1152, sample_size=64, caption_channels=4096, video_length=16)


def perturbed_latte(seed: int = 0, **overrides):
    """A diffusers Latte with every parameter perturbed, so zero-inits hide nothing."""
    torch.manual_seed(seed)
    ref = diffusers.LatteTransformer3DModel(**{**SMALL, **overrides}).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return ref


def converted(ref, drop_sigma: bool = False) -> FactorizedModel:
    cfg = latte_convert.config_from_diffusers(dict(ref.config), drop_sigma=drop_sigma)
    model = FactorizedModel(cfg).eval()
    model.load_state_dict(latte_convert.state_dict_from_diffusers(ref.state_dict(), drop_sigma=drop_sigma))
    return model


def run_both(ref, model, b, f, hh, ww, seed=1):
    """Both models on the same fresh inputs; diffusers needs its temporal table cut to F frames."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, ref.config.in_channels, f, hh, ww, generator=g)
    t = torch.rand(b, generator=g) * 1000  # different timesteps per batch row
    ctx = torch.randn(b, 7, ref.config.caption_channels, generator=g)
    full = ref.temp_pos_embed
    ref.temp_pos_embed = full[:, :f]
    with torch.no_grad():
        want, got = ref(x, t, ctx).sample, model(x, t, ctx)
    ref.temp_pos_embed = full
    return want, got


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    assert torch.isfinite(got).all()
    return ((got - want).abs().max() / want.abs().max()).item()


@pytest.fixture(scope="module")
def latte_pair():
    ref = perturbed_latte()
    return ref, converted(ref)


# b, f, H, W: frames 1/3/5, patch grids 3x5, 5x3, 4x4 (the base grid), 7x3, batch 1 and 2
SHAPES = [(2, 1, 6, 10), (2, 3, 10, 6), (1, 5, 8, 8), (2, 5, 14, 6), (2, 8, 6, 6)]


@pytest.mark.parametrize("b,f,hh,ww", SHAPES)
def test_matches_diffusers_latte(latte_pair, b, f, hh, ww):
    want, got = run_both(*latte_pair, b, f, hh, ww)
    assert got.shape == (b, 3, f, hh, ww)
    assert rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("overrides", [
    dict(norm_elementwise_affine=True, sample_size=128),  # affine norms, interpolation_scale 2
    dict(activation_fn="gelu", attention_bias=False, norm_eps=1e-5),
])
def test_matches_diffusers_latte_variants(overrides):
    ref = perturbed_latte(seed=2, **overrides)
    want, got = run_both(ref, converted(ref), 2, 3, 6, 10)
    assert rel_err(got, want) <= 1e-5


def test_drop_sigma_keeps_the_noise_half():
    ref = perturbed_latte(seed=3, out_channels=6)
    with pytest.raises(ConfigError, match="drop_sigma"):
        latte_convert.config_from_diffusers(dict(ref.config))
    model = converted(ref, drop_sigma=True)
    want, got = run_both(ref, model, 2, 3, 6, 10)
    assert got.shape == (2, 3, 3, 6, 10)
    assert rel_err(got, want[:, :3]) <= 1e-5


@pytest.mark.parametrize("field,value,match", [
    ("activation_fn", "geglu", "activation_fn"),
    ("norm_type", "ada_norm_zero", "norm_type"),
    ("cross_attention_dim", 16, "cross_attention_dim"),
    ("use_rope", True, "use_rope"),
    ("_class_name", "PixArtTransformer2DModel", "_class_name"),
])
def test_unsupported_diffusers_config_is_named(field, value, match):
    with pytest.raises(ConfigError, match=match):
        latte_convert.config_from_diffusers({**SMALL, field: value})


def test_latte_1_config_converts():
    cfg = latte_convert.config_from_diffusers({**LATTE_1, "_class_name": "LatteTransformer3DModel"}, drop_sigma=True)
    assert cfg == FactorizedConfig.from_name("latte-like")
    assert latte_convert.DIFFUSERS_CLASS == "LatteTransformer3DModel"


def test_unexpected_checkpoint_keys_are_named(latte_pair):
    sd = dict(latte_pair[0].state_dict())
    sd["transformer_blocks.0.attn1.norm_q.weight"] = torch.ones(8)
    with pytest.raises(CheckpointError, match="attn1.norm_q.weight"):
        latte_convert.state_dict_from_diffusers(sd)


# ---------------------------------------------------------------- our own behaviour


def tiny(**overrides) -> FactorizedModel:
    torch.manual_seed(0)
    return FactorizedModel(FactorizedConfig.from_name("factorized-tiny", **overrides)).eval()


def tiny_inputs(b=1, f=3, hh=16, ww=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, f, hh, ww, generator=g), torch.rand(b, generator=g) * 1000, torch.randn(b, 5, 64, generator=g)


def test_cond_channels_change_the_output():
    model = tiny(cond_channels=2)
    x, t, ctx = tiny_inputs(b=2)
    cond = torch.randn(2, 2, 3, 16, 24)
    with torch.no_grad():
        out, out_other = model(x, t, ctx, cond=cond), model(x, t, ctx, cond=cond.flip(2))
        out_none, out_zero = model(x, t, ctx), model(x, t, ctx, cond=torch.zeros_like(cond))
    assert out.shape == (2, 3, 3, 16, 24)
    assert (out - out_other).abs().max() > 1e-3
    torch.testing.assert_close(out_none, out_zero, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="cond must be"):
        model(x, t, ctx, cond=cond[:, :1])
    with pytest.raises(ConfigError, match="no cond channels"):
        tiny()(x, t, ctx, cond=cond)


def test_bad_shapes_and_presets_raise_config_errors():
    model = tiny()
    x, t, ctx = tiny_inputs()
    with pytest.raises(ConfigError, match="divisible"):
        model(x[..., :15], t, ctx)
    with pytest.raises(ConfigError, match="max_frames"):
        model(torch.randn(1, 3, 33, 16, 16), t, ctx)
    with pytest.raises(ConfigError, match="unknown factorized preset"):
        FactorizedConfig.from_name("latte-huge")
    with pytest.raises(ConfigError, match="patch_size"):
        FactorizedConfig.from_name("factorized-tiny", patch_size=(2, 4, 4))


def test_config_json_round_trip():
    cfg = FactorizedConfig.from_name("factorized-tiny", cond_channels=4)
    import json

    assert FactorizedConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.to_dict()["family"] == "factorized"


@pytest.mark.parametrize("name", ["latte-like", "factorized-tiny"])
def test_preset_parameter_counts_match_diffusers(name):
    cfg = FactorizedConfig.from_name(name)
    p = cfg.patch_size[1]
    dcfg = dict(SMALL, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim, in_channels=cfg.in_channels,
                out_channels=cfg.out_channels, num_layers=cfg.num_layers, cross_attention_dim=cfg.dim, patch_size=p,
                sample_size=cfg.sample_size, caption_channels=cfg.text_dim, video_length=cfg.max_frames)
    with torch.device("meta"):
        ours = sum(t.numel() for t in FactorizedModel(cfg).parameters())
        theirs = sum(t.numel() for t in diffusers.LatteTransformer3DModel(**dcfg).parameters())
    assert ours == theirs == {"latte-like": 1_057_228_432, "factorized-tiny": 1_112_240}[name]


def test_tiny_runs_at_the_generate_default_shape():
    model = tiny()
    x, t, ctx = tiny_inputs(f=17, hh=64, ww=64)
    with torch.no_grad():
        out = model(x, t, ctx)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.std() > 0.01


def test_temporal_attention_goes_through_the_op(monkeypatch):
    calls = []

    def counting(q, k, v):
        calls.append((q.shape, k.shape, v.shape))
        return ops.temporal_attention_torch(q, k, v)

    # keep the registry as it was: no kernel import triggered here, the registration undone after
    monkeypatch.setattr(ops, "_KERNELS_LOADED", True)
    monkeypatch.setitem(ops._IMPLS, "temporal_attention", list(ops._IMPLS["temporal_attention"]))
    ops.register("temporal_attention", "counting-test", counting)
    model = tiny()
    x, t, ctx = tiny_inputs(b=2, f=3, hh=16, ww=24)
    with torch.no_grad():
        want = model(x, t, ctx)
        calls.clear()
        with ops.use(temporal_attention="counting-test"):
            got = model(x, t, ctx)
    s, heads, d = (16 // 4) * (24 // 4), 4, 32
    assert calls == [((2, 3, s, heads, d),) * 3] * model.config.num_layers
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_torch_export_with_dynamic_frames_height_width():
    from torch.export import Dim

    model = tiny()
    f, h, w = Dim("frames", min=2, max=32), Dim("h", min=2, max=32), Dim("w", min=2, max=32)
    ep = torch.export.export(model, tiny_inputs(f=5, hh=32, ww=48), strict=False,
                             dynamic_shapes=({2: f, 3: 4 * h, 4: 4 * w}, None, None))
    x, t, ctx = tiny_inputs(f=7, hh=24, ww=40, seed=5)
    with torch.no_grad():
        want, got = model(x, t, ctx), ep.module()(x, t, ctx)
    assert got.shape == (1, 3, 7, 24, 40)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
