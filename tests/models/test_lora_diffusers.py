"""vdrt.models.lora against diffusers' own LoRA path (PEFT) on the same wan-tiny weights.

The reference is diffusers' WanTransformer3DModel with `load_lora_adapter` (PEFT LoRA layers), fed
diffusers-format keys directly, or original / kohya keys through diffusers' own converters
(`WanLoraLoaderMixin.lora_state_dict`), or a file PEFT itself saved (alpha and rank patterns in its header).
"""
from __future__ import annotations

import copy
import functools

import pytest
import torch

from tests.models.test_lora import Spec, base_model, forward, fresh, random_spec, tiny_inputs, write
from tests.models.test_wan import diffusers_forward, rel_err
from vdrt.models import lora
from vdrt.models.wan_convert import config_to_diffusers, state_dict_to_diffusers

pytest.importorskip("peft")
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


@functools.lru_cache(maxsize=None)
def _twin():
    """diffusers' WanTransformer3DModel holding exactly wan-tiny's weights (checked against vdrt)."""
    from diffusers import WanTransformer3DModel

    ref = WanTransformer3DModel(**config_to_diffusers(base_model().config)).eval()
    ref.load_state_dict(state_dict_to_diffusers(base_model().state_dict(), ref.state_dict().keys()), strict=True)
    return ref


def twin():
    return copy.deepcopy(_twin())


def theirs(ref) -> torch.Tensor:
    with torch.no_grad():
        return diffusers_forward(ref, tiny_inputs())


def test_the_twin_computes_what_vdrt_computes():
    assert rel_err(theirs(twin()), forward(base_model())) <= 1e-5


def peft_friendly(seed: int, alpha: bool) -> Spec:
    """A LoRA diffusers can also read: low-rank pairs everywhere (the patch embedding's is a Conv3d pair),
    bias deltas on the block Linears; no norm or modulation deltas (diffusers drops those)."""
    spec = random_spec(seed=seed, alpha=alpha)
    spec.diffs = {k: v for k, v in spec.diffs.items() if k.endswith(".bias")}
    return spec


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_diffusers_format_matches_peft_load_lora_adapter(fuse, record_property):
    spec = peft_friendly(seed=1, alpha=False)
    sd = write(spec, "diffusers")
    ref = twin()
    ref.load_lora_adapter({k: v.clone() for k, v in sd.items()}, prefix="transformer", adapter_name="a")
    model = fresh()
    lora.load_lora(model, sd, scale=1.0, fuse=fuse)
    err = rel_err(forward(model), theirs(ref))
    record_property("rel_err_vs_peft", err)
    assert err <= 1e-5 and rel_err(theirs(ref), forward(base_model())) > 0.05


@pytest.mark.parametrize("fmt", ["original", "kohya"])
def test_original_and_kohya_keys_match_diffusers_own_conversion(fmt, record_property):
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    spec = random_spec(seed=2, extra=False, diffs=fmt == "original")  # musubi's converter reads block pairs only
    spec.diffs = {k: v for k, v in spec.diffs.items() if k.endswith(".bias")}
    if fmt == "original":
        spec.pairs["head.head"] = random_spec(seed=3, alpha=False).pairs["head.head"]
    sd = write(spec, fmt)
    converted = WanLoraLoaderMixin.lora_state_dict({k: v.clone() for k, v in sd.items()})  # it scales in place
    ref = twin()
    ref.load_lora_adapter(converted, prefix="transformer", adapter_name="a")
    model = fresh()
    lora.load_lora(model, sd)
    err = rel_err(forward(model), theirs(ref))
    record_property("rel_err_vs_diffusers_conversion", err)
    assert err <= 1e-5


def _peft_trained(seed: int, rslora: bool):
    """A twin with a PEFT adapter (r 4, alpha 8, one alpha and one rank override, lora_bias), random weights."""
    from peft import LoraConfig

    ref = twin()
    config = LoraConfig(r=4, lora_alpha=8, lora_bias=True, use_rslora=rslora,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2", "proj_out"],
                        alpha_pattern={"blocks.1.attn1.to_q": 2.0}, rank_pattern={"blocks.0.ffn.net.2": 2})
    ref.add_adapter(config, adapter_name="default")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return ref


@pytest.mark.parametrize("rslora", [False, True], ids=["alpha-over-r", "rslora"])
@pytest.mark.parametrize("saver", ["model", "pipeline"])
def test_a_file_peft_saved_keeps_its_alphas(saver, rslora, tmp_path, record_property):
    from peft.utils import get_peft_model_state_dict

    ref = _peft_trained(seed=4, rslora=rslora)
    if saver == "model":  # unprefixed keys and header
        ref.save_lora_adapter(str(tmp_path), adapter_name="default")
    else:  # WanPipeline.save_lora_weights: "transformer."-prefixed keys and header fields
        from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

        WanLoraLoaderMixin.save_lora_weights(str(tmp_path), transformer_lora_layers=get_peft_model_state_dict(ref),
                                             transformer_lora_adapter_metadata=ref.peft_config["default"].to_dict())
    model = fresh()
    lora.load_lora(model, tmp_path)
    err = rel_err(forward(model), theirs(ref))
    record_property("rel_err_vs_peft_saved_file", err)
    assert err <= 1e-5
