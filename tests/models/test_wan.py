"""WanModel: parity with diffusers' WanTransformer3DModel, presets, conversion errors, torch.export, bf16."""
from __future__ import annotations

import copy
import functools

import pytest
import torch

from vdrt.errors import CheckpointError, ConfigError
from vdrt.models.wan import WanConfig, WanModel
from vdrt.models.wan_blocks import rope_tables
from vdrt.ops import apply_rope
from vdrt.models.wan_convert import DIFFUSERS_CLASS, config_from_diffusers, state_dict_from_diffusers

TINY_T2V = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=16,
                out_channels=16, text_dim=64, freq_dim=256, ffn_dim=256, num_layers=2)
VARIANTS = {
    "t2v": TINY_T2V,
    "i2v": dict(TINY_T2V, in_channels=36, image_dim=32, added_kv_proj_dim=128),
    "pt2-nocrossnorm": dict(TINY_T2V, patch_size=(2, 2, 2), cross_attn_norm=False, num_layers=1),
}
# Real diffusers configs (Wan-AI/Wan2.1-*-Diffusers transformer/config.json).
_REAL_T2V = dict(_class_name=DIFFUSERS_CLASS, _diffusers_version="0.33.0.dev0", added_kv_proj_dim=None,
                 attention_head_dim=128, cross_attn_norm=True, eps=1e-06, ffn_dim=8960, freq_dim=256,
                 image_dim=None, in_channels=16, num_attention_heads=12, num_layers=30, out_channels=16,
                 patch_size=[1, 2, 2], qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, text_dim=4096)
_REAL_14B = dict(_REAL_T2V, ffn_dim=13824, num_attention_heads=40, num_layers=40)
REAL_CONFIGS = {
    "wan2.1-t2v-1.3b": _REAL_T2V,
    "wan2.1-t2v-14b": _REAL_14B,
    "wan2.1-i2v-14b-480p": dict(_REAL_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@functools.lru_cache(maxsize=None)
def diffusers_and_vdrt(variant: str):
    """A tiny diffusers model with every parameter perturbed, and our model loaded from it (strict)."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    ref = WanTransformer3DModel(**VARIANTS[variant]).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.add_(0.02 * torch.randn_like(p))  # no zero-init (modulation, biases) hides a mistake
            if ".norm_q." in name or ".norm_k." in name:
                p.mul_(3.0)  # sharper attention, as in trained models, so rope mistakes show
    model = WanModel(config_from_diffusers(dict(ref.config))).eval()
    model.load_state_dict(state_dict_from_diffusers(ref.state_dict()), strict=True)
    return ref, model


def make_inputs(config: WanConfig, b: int, f: int, h: int, w: int, text: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = dict(latents=torch.randn(b, config.in_channels, f, h, w, generator=g),
             timestep=torch.rand(b, generator=g) * 1000,
             context=torch.randn(b, text, config.text_dim, generator=g))
    if config.cond_channels:
        x["cond"] = torch.randn(b, config.cond_channels, f, h, w, generator=g)
    if config.image_dim:
        x["image_embeds"] = torch.randn(b, 257, config.image_dim, generator=g)
    return x


def diffusers_forward(ref, x: dict) -> torch.Tensor:
    hidden = torch.cat([x["latents"], x["cond"]], dim=1) if "cond" in x else x["latents"]
    return ref(hidden, x["timestep"], x["context"], x.get("image_embeds"), return_dict=False)[0]


# variant, batch, frames, height, width, text tokens (diffusers' I2V hard-codes 512 text tokens)
CASES = [
    ("t2v", 1, 1, 12, 20, 7),
    ("t2v", 2, 3, 20, 12, 13),
    ("t2v", 1, 5, 14, 10, 77),
    ("i2v", 2, 3, 12, 20, 512),
    ("i2v", 1, 1, 20, 12, 512),
    ("pt2-nocrossnorm", 2, 4, 12, 20, 9),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "{}-b{}-f{}-{}x{}-t{}".format(*c))
def test_matches_diffusers(case, record_property):
    variant, *shape = case
    ref, model = diffusers_and_vdrt(variant)
    x = make_inputs(model.config, *shape)
    with torch.no_grad():
        ours, theirs = model(**x), diffusers_forward(ref, x)
    assert ours.shape == theirs.shape == x["latents"].shape[:1] + (16,) + x["latents"].shape[2:]
    err = rel_err(ours, theirs)
    record_property("rel_err_vs_diffusers", err)
    assert err <= 1e-5, f"relative error {err:.3e}"


def test_batch_elements_are_independent():
    _, model = diffusers_and_vdrt("t2v")
    x = make_inputs(model.config, 2, 3, 12, 20, 11)
    with torch.no_grad():
        both = model(**x)
        firsts = [model(**{k: v[i:i + 1] for k, v in x.items()}) for i in range(2)]
    assert rel_err(both, torch.cat(firsts)) <= 1e-5
    assert rel_err(both[0], both[1]) > 0.1  # different noise, text and timestep per element


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_real_diffusers_configs_give_presets(name):
    assert config_from_diffusers(REAL_CONFIGS[name]) == WanConfig.from_name(name)


@pytest.mark.parametrize("name,low,high", [
    ("wan2.1-t2v-1.3b", 1.3e9, 1.5e9),
    ("wan2.1-t2v-14b", 13.5e9, 15e9),
    ("wan2.1-i2v-14b-480p", 15.5e9, 17e9),
    ("wan-tiny", 2e5, 5e6),
    ("wan-tiny-i2v", 2e5, 5e6),
])
def test_preset_parameter_counts(name, low, high, record_property):
    with torch.device("meta"):
        model = WanModel(WanConfig.from_name(name))
    n = sum(p.numel() for p in model.parameters())
    record_property("params", n)
    assert low <= n <= high


def test_presets_round_trip_through_json_dicts():
    for name in WanConfig.PRESETS:
        config = WanConfig.from_name(name)
        assert WanConfig.from_dict(config.to_dict()) == config


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="wan3-t2v-1b") as info:
        WanConfig.from_name("wan3-t2v-1b")
    assert all(name in str(info.value) for name in WanConfig.PRESETS)


def test_bad_head_split_is_a_config_error():
    with pytest.raises(ConfigError, match="num_heads"):
        WanConfig(dim=100, num_heads=3)


@pytest.mark.parametrize("change,match", [
    (dict(pos_embed_seq_len=514), "FLF2V"),
    (dict(_class_name="WanVACETransformer3DModel"), "WanVACETransformer3DModel"),
    (dict(some_new_field=1), "some_new_field"),
    (dict(added_kv_proj_dim=1280), "added_kv_proj_dim"),
    (dict(image_dim=None), "both set"),
    (dict(qk_norm="rms_norm"), "qk_norm"),
])
def test_unsupported_diffusers_configs_are_refused(change, match):
    with pytest.raises(ConfigError, match=match):
        config_from_diffusers({**REAL_CONFIGS["wan2.1-i2v-14b-480p"], **change})


def test_unexpected_checkpoint_key_is_named():
    ref, _ = diffusers_and_vdrt("t2v")
    sd = {**ref.state_dict(), "blocks.0.attn1.lora_A.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn1\.lora_A\.weight"):
        state_dict_from_diffusers(sd)


def test_keys_diffusers_ignores_are_dropped():
    ref, model = diffusers_and_vdrt("i2v")
    sd = {**ref.state_dict(), "blocks.1.attn2.norm_added_q.weight": torch.ones(128)}
    model.load_state_dict(state_dict_from_diffusers(sd), strict=True)


def test_conditioning_inputs_are_checked():
    _, model = diffusers_and_vdrt("i2v")
    x = make_inputs(model.config, 1, 1, 4, 4, 5)
    with pytest.raises(ConfigError, match="cond"):
        model(**{k: v for k, v in x.items() if k != "cond"})
    with pytest.raises(ConfigError, match="multiples of patch_size"):
        model(**make_inputs(model.config, 1, 1, 5, 4, 5))


def test_bf16_keeps_fp32_parts_and_errs_no_more_than_diffusers(record_property):
    ref, model32 = diffusers_and_vdrt("i2v")
    model = copy.deepcopy(model32).to_dtype(torch.bfloat16)
    assert model.blocks[0].modulation.dtype == model.time_embedding[0].weight.dtype == torch.float32
    assert model.blocks[0].ffn[0].weight.dtype == torch.bfloat16
    x = make_inputs(model.config, 2, 3, 12, 20, 512)
    x16 = {k: v.bfloat16() for k, v in x.items()}
    with torch.no_grad():
        ours, exact = model(**x16), diffusers_forward(ref, x)
        theirs = diffusers_forward(copy.deepcopy(ref).to(torch.bfloat16), x16)
    assert ours.dtype == torch.bfloat16
    err, budget = rel_err(ours.float(), exact), rel_err(theirs.float(), exact)
    record_property("rel_err_bf16_vs_fp32", err)
    record_property("rel_err_diffusers_bf16_vs_fp32", budget)
    assert err <= 1.5 * budget
    assert model.to(torch.bfloat16).rope.cos.dtype == torch.float32


def test_torch_export_with_dynamic_frames_height_width(record_property):
    from torch.export import Dim, export

    torch.manual_seed(0)
    model = WanModel(WanConfig.from_name("wan-tiny")).eval()
    batch, frames = Dim("batch", min=1, max=8), Dim("frames", min=1, max=32)
    height, width = Dim("height", min=2, max=32), Dim("width", min=2, max=32)
    dims = {"latents": {0: batch, 2: frames, 3: 2 * height, 4: 2 * width},
            "timestep": {0: batch}, "context": {0: batch}}
    program = export(model, (), make_inputs(model.config, 2, 3, 12, 20, 7), dynamic_shapes=dims, strict=False)
    x = make_inputs(model.config, 3, 5, 20, 14, 7, seed=2)
    with torch.no_grad():
        err = rel_err(program.module()(**x), model(**x))
    record_property("rel_err_export_vs_eager", err)
    assert err <= 1e-5


@pytest.mark.parametrize("grid", [(1, 6, 10), (3, 10, 6), (5, 7, 5)], ids=lambda g: "{}x{}x{}".format(*g))
def test_rope_tables_match_diffusers_and_rotate_like_complex_numbers(grid):
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    f, h, w = grid
    ours = WanModel(WanConfig.from_name("wan-tiny")).rope
    their_cos, their_sin = WanRotaryPosEmbed(64, (1, 2, 2), 1024)(torch.empty(1, 1, f, 2 * h, 2 * w))
    cos, sin = ours(f, h, w)  # (L, K/2)
    assert torch.equal(cos, their_cos[0, :, 0, 0::2]) and torch.equal(sin, their_sin[0, :, 0, 1::2])
    q = torch.randn(2, f * h * w, 3, 64, dtype=torch.float64)
    rotation = torch.complex(cos.double(), sin.double())[None, :, None]  # (1, L, 1, K/2)
    expect = torch.view_as_real(torch.view_as_complex(q.unflatten(-1, (-1, 2))) * rotation).flatten(-2)
    assert rel_err(apply_rope(q, cos.double(), sin.double()), expect) <= 1e-12


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
def test_block_update_matches_diffusers(variant, record_property):
    """The residual update of one block (small next to the residual itself in the full model)."""
    ref, model = diffusers_and_vdrt(variant)
    g = torch.Generator().manual_seed(3)
    f, h, w, d = 3, 6, 10, model.config.dim
    x, e0 = torch.randn(2, f * h * w, d, generator=g), torch.randn(2, 6, d, generator=g)
    text = torch.randn(2, 512 if variant == "i2v" else 13, d, generator=g)
    image = torch.randn(2, 257, d, generator=g) if variant == "i2v" else None
    context = text if image is None else torch.cat([image, text], dim=1)
    with torch.no_grad():
        theirs = ref.blocks[1](x, context, e0, ref.rope(torch.empty(1, 1, f, 2 * h, 2 * w))) - x
        ours = model.blocks[1](x, e0, text, image, *model.rope(f, h, w), (f, h, w)) - x
    err = rel_err(ours, theirs)
    record_property("rel_err_block_update", err)
    assert err <= 1e-5


def test_rope_tables_survive_meta_init_and_to_empty():
    with torch.device("meta"):
        model = WanModel(WanConfig.from_name("wan-tiny"))
    model.to_empty(device="cpu")
    expect, _ = rope_tables(model.config.head_dim, model.config.rope_max_seq_len)
    assert model.rope.cos.device.type == "cpu" and torch.equal(model.rope.cos, expect)
