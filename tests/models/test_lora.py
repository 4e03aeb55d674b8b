"""vdrt.models.lora on wan-tiny: every key format equals a manually merged model, fused or not; stacking,
scale 0, unfusing, hot-swapping and torch.export of an unfused adapter.

The helpers here (random LoRAs, writers for each key format, the manual merge) serve the other
tests/models/test_lora_*.py files too.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import logging

import pytest
import torch
from safetensors.torch import save_file

import vdrt
from tests.models.test_wan import make_inputs, rel_err
from vdrt.models import lora
from vdrt.models.wan_convert import config_to_diffusers, rename_diffusers_key

pytestmark = pytest.mark.usefixtures("one_thread")

FORMATS = ("original", "diffusers", "kohya")
LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
           "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")


@dataclasses.dataclass
class Spec:
    """A LoRA in vdrt names: {module: (down, up, alpha | None)} low-rank pairs, {param: delta} diffs."""

    pairs: dict
    diffs: dict


@functools.lru_cache(maxsize=None)
def base_model():
    return vdrt.load_denoiser("wan-tiny")


def fresh():
    return copy.deepcopy(base_model())


def tiny_inputs(seed: int = 1) -> dict:
    return make_inputs(base_model().config, 2, 3, 8, 12, 7, seed=seed)


def forward(model, x=None) -> torch.Tensor:
    with torch.no_grad():
        return model(**(x or tiny_inputs()))


def random_spec(seed: int, rank: int = 4, blocks=(0, 1), alpha=True, diffs=True, extra=True) -> Spec:
    """Low-rank pairs on every block Linear (+ head, text embedding, time projection, patch embedding when
    `extra`), bias deltas on the block Linears and `.diff` deltas on norms and modulation when `diffs`."""
    g = torch.Generator().manual_seed(seed)
    params = dict(base_model().named_parameters())
    modules = [f"blocks.{b}.{m}" for b in blocks for m in LINEARS]
    if extra:
        modules += ["head.head", "text_embedding.0", "time_projection.1", "patch_embedding"]
    pairs = {m: _pair(params[f"{m}.weight"].shape, rank, g, alpha) for m in modules}
    deltas = {}
    if diffs:
        deltas = {f"blocks.{b}.{m}.bias": 0.05 * torch.randn(params[f"blocks.{b}.{m}.bias"].shape, generator=g)
                  for b in blocks for m in LINEARS}
        for name in ("blocks.0.norm3.weight", "blocks.1.self_attn.norm_q.weight", "blocks.0.modulation"):
            deltas[name] = 0.05 * torch.randn(params[name].shape, generator=g)
    return Spec(pairs, deltas)


def _pair(shape, rank, g, alpha):
    """down (r, in, *kernel), up (out, r, 1, ...): a Conv3d-style pair for the 5-D patch embedding."""
    down = 0.2 * torch.randn(rank, *shape[1:], generator=g)
    up = 0.2 * torch.randn(shape[0], rank, *[1] * (len(shape) - 2), generator=g)
    return down, up, (float(rank) * 0.5 if alpha else None)


# ---------------------------------------------------------------- writers, one per key format

@functools.lru_cache(maxsize=None)
def diffusers_names() -> dict:
    """vdrt parameter -> diffusers key, from a real WanTransformer3DModel's state dict."""
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        ref = WanTransformer3DModel(**config_to_diffusers(base_model().config))
    return {rename_diffusers_key(k): k for k in ref.state_dict()}


def module_name(fmt: str, param_or_module: str, is_param: bool = False) -> str:
    """The module path of a vdrt module (or, for bare parameters like modulation, the parameter) in `fmt`."""
    if fmt == "diffusers":
        key = diffusers_names()[param_or_module if is_param else f"{param_or_module}.weight"]
        return key if is_param else key.rsplit(".", 1)[0]
    if fmt == "kohya":
        return "lora_unet_" + param_or_module.replace(".", "_")
    return "diffusion_model." + param_or_module


def write(spec: Spec, fmt: str) -> dict:
    """The LoRA as a state dict in key format `fmt`."""
    sd = {}
    down_k, up_k = ("lora_A.weight", "lora_B.weight") if fmt == "diffusers" else ("lora_down.weight", "lora_up.weight")
    prefix = "transformer." if fmt == "diffusers" else ""
    for m, (down, up, alpha) in spec.pairs.items():
        name = prefix + module_name(fmt, m)
        sd[f"{name}.{down_k}"], sd[f"{name}.{up_k}"] = down, up
        if alpha is not None:
            sd[f"{name}.alpha"] = torch.tensor(alpha)
    for param, d in spec.diffs.items():
        sd.update(_diff_key(fmt, prefix, param, d, spec.pairs))
    return sd


def _diff_key(fmt, prefix, param, d, pairs) -> dict:
    module, leaf = param.rsplit(".", 1)
    if fmt == "diffusers" and leaf == "bias" and module in pairs:  # PEFT's lora_bias: scaled like its pair
        down, _, alpha = pairs[module]
        return {prefix + module_name(fmt, module) + ".lora_B.bias": d * down.shape[0] / (alpha or down.shape[0])}
    if leaf == "bias":
        return {prefix + module_name(fmt, module) + ".diff_b": d}
    if leaf == "weight":
        return {prefix + module_name(fmt, module) + ".diff": d}
    return {prefix + module_name(fmt, param, is_param=True) + ".diff": d}  # a bare parameter (modulation)


def save(tmp_path, spec: Spec, fmt: str, name: str = "lora") -> str:
    path = tmp_path / f"{name}-{fmt}.safetensors"
    save_file({k: v.contiguous() for k, v in write(spec, fmt).items()}, str(path))
    return str(path)


# ---------------------------------------------------------------- the reference: a manual merge

def merged(specs_and_scales) -> torch.nn.Module:
    """A copy of the base with every (spec, scale) added into its weights, in float64, then rounded once."""
    model = fresh()
    params = dict(model.named_parameters())
    total = {name: p.double() for name, p in params.items()}
    for spec, scale in specs_and_scales:
        for m, (down, up, alpha) in spec.pairs.items():
            r = down.shape[0]
            w = total[f"{m}.weight"]
            delta = up.double().flatten(1) @ down.double().flatten(1)
            total[f"{m}.weight"] = w + scale * (alpha if alpha is not None else r) / r * delta.reshape(w.shape)
        for param, d in spec.diffs.items():
            total[param] = total[param] + scale * d.double().reshape(total[param].shape)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(total[name].to(p.dtype))
    return model


def assert_matches(model, reference, record_property=None, tol=1e-5) -> float:
    err = rel_err(forward(model), forward(reference))
    if record_property:
        record_property("rel_err_vs_manual_merge", err)
    assert err <= tol, f"relative error {err:.3e}"
    return err


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_equals_manual_merge(fmt, fuse, tmp_path, record_property):
    spec = random_spec(seed=1)
    model = fresh()
    name = lora.load_lora(model, save(tmp_path, spec, fmt), scale=0.7, fuse=fuse)
    assert_matches(model, merged([(spec, 0.7)]), record_property)
    assert rel_err(forward(model), forward(base_model())) > 0.05  # the LoRA really changes the output
    row = lora.list_loras(model)[0]
    assert row["name"] == name == f"lora-{fmt}" and row["fused"] is fuse and row["scale"] == 0.7
    assert row["formats"] == {fmt: {"low-rank": 24, "diff": 3, "diff_b": 20}}


def test_sha256_and_applied_counts_are_reported(tmp_path, caplog):
    path = save(tmp_path, random_spec(seed=2), "original")
    model = fresh()
    with caplog.at_level(logging.INFO, logger="vdrt.models.lora"):
        lora.load_lora(model, path)
    assert lora.list_loras(model)[0]["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert "applied original: 24 low-rank, 3 diff, 20 diff_b" in caplog.text


def test_two_loras_stack_in_different_formats_and_modes(tmp_path, record_property):
    a, b = random_spec(seed=3), random_spec(seed=4, rank=2)
    model = fresh()
    lora.load_lora(model, save(tmp_path, a, "diffusers"), scale=0.6, fuse=True)
    lora.load_lora(model, save(tmp_path, b, "kohya"), scale=-0.4)
    assert [r["fused"] for r in lora.list_loras(model)] == [True, False]
    assert_matches(model, merged([(a, 0.6), (b, -0.4)]), record_property)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_scale_zero_equals_the_base(fuse):
    model = fresh()
    lora.load_lora(model, write(random_spec(seed=5), "original"), scale=0.0, fuse=fuse)
    assert torch.equal(forward(model), forward(base_model()))


def assert_weights_restored(model) -> float:
    """Every parameter back to the base within fp32 rounding of the values it passed through."""
    worst = 0.0
    for (name, p), q in zip(model.named_parameters(), base_model().parameters()):
        bound = 4 * torch.finfo(torch.float32).eps * max(p.abs().max().item(), q.abs().max().item(), 1.0)
        err = (p - q).abs().max().item()
        assert err <= bound, f"{name}: off by {err:.3e} (> {bound:.3e})"
        worst = max(worst, err)
    return worst


def test_unfuse_and_unload_restore_the_base_weights(record_property):
    spec = random_spec(seed=6)
    model = fresh()
    lora.load_lora(model, write(spec, "original"), scale=1.3, adapter_name="a", fuse=True)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), base_model().parameters()))
    lora.unfuse_lora(model, "a")  # the low-rank part moves onto hooks; the diffs stay in the weights
    assert_matches(model, merged([(spec, 1.3)]))
    lora.unload_lora(model)
    record_property("max_abs_err_after_unload", assert_weights_restored(model))
    assert lora.list_loras(model) == [] and not [n for n, _ in model.named_modules() if "vdrt_lora" in n]
    assert rel_err(forward(model), forward(base_model())) <= 1e-6


def test_hot_swap_rescale_disable_enable_without_reloading_the_base(record_property):
    a, b = random_spec(seed=7), random_spec(seed=8, diffs=False)
    model = fresh()
    storage = {n: p.data_ptr() for n, p in model.named_parameters()}
    lora.load_lora(model, write(a, "original"), adapter_name="a")
    lora.set_lora_scale(model, "a", 0.5)
    assert_matches(model, merged([(a, 0.5)]))
    lora.disable_lora(model, "a")
    assert rel_err(forward(model), forward(base_model())) <= 1e-6
    lora.enable_lora(model, "a")
    assert_matches(model, merged([(a, 0.5)]))
    lora.unload_lora(model, "a")
    lora.load_lora(model, write(b, "diffusers"), adapter_name="b", scale=1.5)
    assert_matches(model, merged([(b, 1.5)]), record_property)
    assert storage == {n: p.data_ptr() for n, p in model.named_parameters()}  # same tensors: nothing reloaded


def test_rescaling_a_fused_adapter_and_fusing_an_unfused_one():
    spec = random_spec(seed=9)
    model = fresh()
    lora.load_lora(model, write(spec, "kohya"), adapter_name="k", fuse=True)
    lora.set_lora_scale(model, "k", -0.8)
    assert_matches(model, merged([(spec, -0.8)]))
    lora.unfuse_lora(model)
    lora.fuse_lora(model)
    assert_matches(model, merged([(spec, -0.8)]))
    assert not [n for n, _ in model.named_modules() if "vdrt_lora" in n]  # fused: no hook left


def test_unfused_adapter_leaves_the_state_dict_alone():
    model = fresh()
    lora.load_lora(model, write(random_spec(seed=10, diffs=False, extra=False), "original"))
    ours, base = model.state_dict(), base_model().state_dict()
    assert list(ours) == list(base) and all(torch.equal(ours[k], base[k]) for k in base)


def test_torch_export_keeps_an_unfused_adapter(record_property):
    spec = random_spec(seed=11)
    model = fresh()
    lora.load_lora(model, write(spec, "diffusers"), scale=0.9)
    x = tiny_inputs()
    program = torch.export.export(model, (), x, strict=False)
    linears = sum(n.target == torch.ops.aten.linear.default for n in program.graph.nodes)
    assert linears == 27 + 2 * 23  # every Linear through its op, plus down and up for each hooked one
    with torch.no_grad():
        err = rel_err(program.module()(**x), forward(merged([(spec, 0.9)]), x))
    record_property("rel_err_export_vs_manual_merge", err)
    assert err <= 1e-5
