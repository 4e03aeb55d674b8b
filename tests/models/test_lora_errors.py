"""vdrt.models.lora bad input: each refused with one clear message, before any weight changes."""
from __future__ import annotations

import logging
import math

import pytest
import torch
from safetensors.torch import save_file

from tests.models.test_lora import (
    assert_matches, base_model, forward, fresh, merged, random_spec, save, write,
)
from vdrt.errors import CheckpointError, ConfigError
from vdrt.models import lora
from vdrt.models.wan import WanConfig, WanModel

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_untouched(model) -> None:
    """Nothing half-written: same weights as the base, no adapter, no hook."""
    assert lora.list_loras(model) == []
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), base_model().parameters()))
    assert not [n for n, _ in model.named_modules() if "vdrt_lora" in n]


def refused(sd, error=CheckpointError, match=None, **kw):
    model = fresh()
    with pytest.raises(error, match=match) as info:
        lora.load_lora(model, sd, **kw)
    assert_untouched(model)
    return str(info.value)


def test_a_lora_for_another_model_size_names_the_first_mismatched_key_and_both_shapes():
    torch.manual_seed(0)
    other = WanModel(WanConfig.from_name("wan-tiny", ffn_dim=192))  # same names, other FFN width
    sd = {}
    for m in ("blocks.0.ffn.0", "blocks.0.self_attn.q"):
        w = dict(other.named_parameters())[f"{m}.weight"]
        sd[f"diffusion_model.{m}.lora_down.weight"] = torch.randn(4, w.shape[1])
        sd[f"diffusion_model.{m}.lora_up.weight"] = torch.randn(w.shape[0], 4)
    msg = refused(sd, match="does not fit this model")
    assert "diffusion_model.blocks.0.ffn.0.lora_up.weight" in msg and "(192, 128)" in msg and "(256, 128)" in msg


def test_a_diff_of_the_wrong_shape_is_refused():
    msg = refused({"diffusion_model.blocks.0.norm3.diff": torch.randn(64)}, match="does not fit")
    assert "(64,)" in msg and "(128,)" in msg


def test_a_lora_with_no_matching_key_is_refused():
    sd = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 320),
          "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(320, 4)}
    msg = refused(sd, match="none of its 2 keys matches a parameter of this wan model")
    assert "lora_unet_down_blocks_0_attentions_0_proj_in" in msg


def test_keys_for_layers_the_model_lacks_are_named():
    sd = write(random_spec(seed=1, blocks=(0,), diffs=False, extra=False), "original")
    sd["diffusion_model.blocks.7.ffn.0.lora_down.weight"] = torch.randn(4, 128)
    sd["diffusion_model.blocks.7.ffn.0.lora_up.weight"] = torch.randn(256, 4)
    refused(sd, match=r"2 of 32 keys match no parameter.*blocks\.7\.ffn\.0\.lora_down")


def test_rank_mismatch_between_down_and_up():
    sd = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.randn(4, 128),
          "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.randn(128, 3)}
    msg = refused(sd, match="rank mismatch for blocks.0.self_attn.q.weight")
    assert "rank 4 (4, 128)" in msg and "rank 3 (128, 3)" in msg


def test_a_half_pair_is_refused():
    sd = {"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.randn(4, 128)}
    refused(sd, match="incomplete low-rank pair.*lora_A")


def test_a_missing_alpha_uses_rank_and_is_said_once(caplog, tmp_path):
    spec = random_spec(seed=2, alpha=False)
    model = fresh()
    with caplog.at_level(logging.WARNING, logger="vdrt.models.lora"):
        lora.load_lora(model, save(tmp_path, spec, "original"), scale=0.5)
    said = [r for r in caplog.records if "alpha" in r.getMessage()]
    assert len(said) == 1 and "24 low-rank pair(s) have no alpha; using alpha = rank" in said[0].getMessage()
    assert_matches(model, merged([(spec, 0.5)]))


def test_a_pickle_lora_needs_the_trust_flag(tmp_path):
    spec = random_spec(seed=3)
    path = tmp_path / "lora.pt"
    torch.save(write(spec, "original"), path)
    model = fresh()
    with pytest.raises(CheckpointError, match="pickle.*trust_pickle=True"):
        lora.load_lora(model, path)
    assert_untouched(model)
    lora.load_lora(model, path, trust_pickle=True)  # then torch.load(weights_only=True)
    assert_matches(model, merged([(spec, 1.0)]))


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf, "0.5", True, None])
def test_a_scale_that_is_not_a_finite_number_is_refused(scale):
    refused(write(random_spec(seed=4), "original"), error=ConfigError, match="finite number", scale=scale)


def test_rescaling_to_nan_is_refused_and_leaves_the_adapter_as_it_was():
    spec = random_spec(seed=5)
    model = fresh()
    lora.load_lora(model, write(spec, "original"), adapter_name="a", scale=0.5)
    with pytest.raises(ConfigError, match="finite number"):
        lora.set_lora_scale(model, "a", math.nan)
    assert_matches(model, merged([(spec, 0.5)]))


def test_nan_inside_a_lora_is_refused():
    sd = write(random_spec(seed=6), "original")
    sd["diffusion_model.blocks.1.ffn.2.lora_up.weight"][3, 1] = math.nan
    refused(sd, match="blocks.1.ffn.2.lora_up.weight holds NaN")


@pytest.mark.parametrize("key", [
    "diffusion_model.blocks.0.self_attn.q.dora_scale", "lora_unet_blocks_0_ffn_0.hada_w1_a",
    "diffusion_model.blocks.0.ffn.0.lora_mid.weight",
])
def test_key_kinds_vdrt_does_not_read_are_named(key):
    sd = write(random_spec(seed=7, diffs=False, extra=False), "original")
    sd[key] = torch.randn(4, 4)
    msg = refused(sd, match="keys of a kind vdrt does not read")
    assert key in msg


def test_the_same_change_given_twice_is_refused():
    sd = write(random_spec(seed=8, diffs=False, extra=False), "original")
    sd["transformer.blocks.0.attn1.to_q.lora_A.weight"] = torch.randn(4, 128)  # also blocks.0.self_attn.q's down
    refused(sd, match="both give the down of blocks.0.self_attn.q.weight")


def test_a_missing_or_unknown_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        lora.load_lora(fresh(), tmp_path / "nope.safetensors")
    bad = tmp_path / "lora.npz"
    bad.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="neither .safetensors nor a pickle"):
        lora.load_lora(fresh(), bad)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        lora.load_lora(fresh(), corrupt)


def test_adapter_names_are_checked():
    model = fresh()
    sd = write(random_spec(seed=9), "kohya")
    lora.load_lora(model, sd, adapter_name="a")
    with pytest.raises(ConfigError, match="'a' is already loaded"):
        lora.load_lora(model, sd, adapter_name="a")
    with pytest.raises(ConfigError, match="no LoRA adapter named 'b'.*loaded: \\['a'\\]"):
        lora.set_lora_scale(model, "b", 1.0)
    assert lora.load_lora(model, sd) == "adapter"  # a free default name


def test_a_quantized_weight_is_refused():
    model = fresh()
    model.blocks[0].self_attn.q.weight.data = model.blocks[0].self_attn.q.weight.data.to(torch.int8)
    sd = write(random_spec(seed=10, diffs=False, extra=False), "original")
    with pytest.raises(CheckpointError, match="torch.int8; apply LoRAs before quantizing"):
        lora.load_lora(model, sd)


def test_a_safetensors_folder_with_one_file_is_read(tmp_path):
    spec = random_spec(seed=11)
    save_file(write(spec, "diffusers"), str(tmp_path / "pytorch_lora_weights.safetensors"))
    model = fresh()
    lora.load_lora(model, tmp_path)
    assert_matches(model, merged([(spec, 1.0)]))
    (tmp_path / "other.safetensors").write_bytes((tmp_path / "pytorch_lora_weights.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="holds 2 .safetensors files"):
        lora.load_lora(fresh(), tmp_path)
    assert forward(model).isfinite().all()
