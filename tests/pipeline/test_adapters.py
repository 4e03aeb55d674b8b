"""diffusers' LoRA methods on vdrt.Pipeline (vdrt.pipeline.adapters) on wan-tiny, with LoRAs the tests write:
unfused adapters equal a manual merge, set_adapters / fuse / unfuse / unload, scale 0 equals the base, bad
input refused with nothing changed, and a compiled engine refused with the fix."""
from __future__ import annotations

import copy
import math
import types

import pytest
import torch

import vdrt
from tests.models.test_lora import (assert_matches, assert_weights_restored, base_model, forward, merged, random_spec,
                                    save, write)
from tests.models.test_wan import rel_err
from vdrt.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(num_frames=5, height=32, width=32, num_steps=2, output_type="latent", progress=False)


@pytest.fixture(scope="module")
def wan_pipe():
    return vdrt.Pipeline.from_pretrained("wan-tiny", device="cpu", dtype=torch.float32)


@pytest.fixture
def pipe(wan_pipe):
    """The module's wan-tiny pipeline, every adapter unloaded afterwards (the weights back to the base)."""
    yield wan_pipe
    wan_pipe.unload_lora_weights()
    assert_weights_restored(wan_pipe.engine.module)


def module_of(pipe):
    return pipe.engine.module


def test_load_lora_weights_is_an_unfused_adapter_equal_to_the_merge(pipe, tmp_path, record_property):
    spec = random_spec(seed=21)
    name = pipe.load_lora_weights(save(tmp_path, spec, "diffusers"), adapter_name="style", scale=0.7)
    assert name == "style" and pipe.get_active_adapters() == ["style"]
    assert pipe.get_list_adapters() == {"transformer": ["style"]}
    assert [n for n, _ in module_of(pipe).named_modules() if n.endswith("vdrt_lora")]  # hooks: not fused
    assert_matches(module_of(pipe), merged([(spec, 0.7)]), record_property)
    assert rel_err(forward(module_of(pipe)), forward(base_model())) > 0.05


def test_set_adapters_scale_zero_equals_the_base(pipe, tmp_path, record_property):
    base = pipe("a fox", **SMALL).frames
    pipe.load_lora_weights(save(tmp_path, random_spec(seed=22), "original"), adapter_name="a", scale=0.9)
    with_lora = pipe("a fox", **SMALL).frames
    assert rel_err(with_lora, base) > 0.01  # the LoRA changes the generation
    pipe.set_adapters(["a"], [0.0])
    err = rel_err(pipe("a fox", **SMALL).frames, base)
    record_property("rel_err_scale0_vs_base_latents", err)
    assert err <= 1e-5  # the weights back within fp32 rounding (adding, then subtracting the deltas), carried
    #                     through the steps (measured 6.0e-7); the LoRA itself moves the latents by > 1e-2
    record_property("max_abs_weight_err_scale0", assert_weights_restored(module_of(pipe)))


def test_set_adapters_activates_exactly_the_named_ones(pipe, tmp_path):
    a, b = random_spec(seed=23), random_spec(seed=24, rank=2)
    pipe.load_lora_weights(save(tmp_path, a, "original"), adapter_name="a")
    pipe.load_lora_weights(save(tmp_path, b, "kohya"), adapter_name="b")
    pipe.set_adapters("b", 0.5)
    assert pipe.get_active_adapters() == ["b"]
    assert_matches(module_of(pipe), merged([(b, 0.5)]))
    pipe.set_adapters(["a", "b"], [0.3, None])  # None: 1.0, as diffusers
    assert pipe.get_active_adapters() == ["a", "b"]
    assert_matches(module_of(pipe), merged([(a, 0.3), (b, 1.0)]))
    pipe.disable_lora()
    assert pipe.get_active_adapters() == [] and rel_err(forward(module_of(pipe)), forward(base_model())) <= 1e-6
    pipe.enable_lora()
    assert_matches(module_of(pipe), merged([(a, 0.3), (b, 1.0)]))


def test_fuse_unfuse_unload_and_delete(pipe, tmp_path, record_property):
    a, b = random_spec(seed=25), random_spec(seed=26, diffs=False)
    pipe.load_lora_weights(save(tmp_path, a, "original"), adapter_name="a", scale=0.8)
    pipe.load_lora_weights(write(b, "diffusers"), adapter_name="b", scale=-0.5)  # a state dict, as diffusers takes
    pipe.fuse_lora(lora_scale=0.5)
    assert not [n for n, _ in module_of(pipe).named_modules() if n.endswith("vdrt_lora")]  # fused: no hooks left
    assert_matches(module_of(pipe), merged([(a, 0.4), (b, -0.25)]), record_property)
    pipe.unfuse_lora()
    assert [n for n, _ in module_of(pipe).named_modules() if n.endswith("vdrt_lora")]
    assert_matches(module_of(pipe), merged([(a, 0.4), (b, -0.25)]))
    pipe.delete_adapters("a")
    assert pipe.get_list_adapters() == {"transformer": ["b"]}
    assert_matches(module_of(pipe), merged([(b, -0.25)]))
    pipe.unload_lora_weights()
    assert pipe.get_list_adapters() == {"transformer": []}
    record_property("max_abs_weight_err_after_unload", assert_weights_restored(module_of(pipe)))


def test_a_folder_and_weight_name_as_diffusers_passes_them(pipe, tmp_path):
    spec = random_spec(seed=27, extra=False)
    save(tmp_path, spec, "diffusers", "pytorch_lora_weights")
    pipe.load_lora_weights(tmp_path, weight_name="pytorch_lora_weights-diffusers.safetensors")
    assert_matches(module_of(pipe), merged([(spec, 1.0)]))
    assert pipe.get_active_adapters() == ["pytorch_lora_weights-diffusers"]


def test_a_lora_for_another_model_names_the_key_and_both_shapes(pipe, tmp_path):
    bad = write(random_spec(seed=28), "original")
    bad["diffusion_model.blocks.0.ffn.0.lora_up.weight"] = torch.randn(192, 4)
    path = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file(bad, str(path))
    with pytest.raises(CheckpointError, match=r"blocks\.0\.ffn\.0\.lora_up\.weight gives a delta of shape \(192, "
                                              r"128\) but the model's parameter is \(256, 128\)"):
        pipe.load_lora_weights(path)
    assert pipe.get_list_adapters() == {"transformer": []}
    assert not [n for n, _ in module_of(pipe).named_modules() if n.endswith("vdrt_lora")]
    assert_weights_restored(module_of(pipe))  # nothing half-written


@pytest.mark.parametrize("call, error, match", [
    (lambda p, t: p.load_lora_weights(t / "missing.safetensors"), CheckpointError, "does not exist"),
    (lambda p, t: p.load_lora_weights(save(t, random_spec(seed=29), "original"), scale=math.nan), ConfigError,
     "finite number"),
    (lambda p, t: p.set_adapters(["nope"]), ConfigError, "no LoRA adapter named 'nope'"),
    (lambda p, t: p.set_adapters(["a"], [1.0, 2.0]), ConfigError, "1 adapter names but 2 weights"),
    (lambda p, t: p.set_adapters(["a"], [{"blocks.0": 1.0}]), ConfigError, "dicts\\) are not supported"),
    (lambda p, t: p.set_adapters(["a"], [math.inf]), ConfigError, "weight for 'a' must be a finite number"),
    (lambda p, t: p.fuse_lora(components=["text_encoder"]), ConfigError, "the denoiser only"),
])
def test_bad_input_changes_nothing(pipe, tmp_path, call, error, match):
    spec = random_spec(seed=30)
    pipe.load_lora_weights(write(spec, "original"), adapter_name="a", scale=0.6)
    with pytest.raises(error, match=match):
        call(pipe, tmp_path)
    assert pipe.get_active_adapters() == ["a"]
    assert_matches(module_of(pipe), merged([(spec, 0.6)]))


def test_a_compiled_engine_is_refused_with_the_fix(wan_pipe, tmp_path):
    compiled = copy.copy(wan_pipe)
    compiled.engine = types.SimpleNamespace(manifest={"backend": "aoti"}, device=torch.device("cpu"))
    path = save(tmp_path, random_spec(seed=31), "original")
    for call in (lambda: compiled.load_lora_weights(path), lambda: compiled.set_adapters("a"),
                 compiled.fuse_lora, compiled.unfuse_lora, compiled.unload_lora_weights, compiled.get_active_adapters):
        with pytest.raises(ConfigError, match=r"compiled aoti engine, whose weights are baked in; LoRAs must be "
                                              r"fused at build time \(vdrt build MODEL --lora PATH\[:SCALE\]\)"):
            call()


def test_adapter_changes_drop_captured_cuda_graphs(pipe, tmp_path, monkeypatch):
    dropped = []
    monkeypatch.setattr(pipe.engine, "reset_graphs", lambda: dropped.append(1), raising=False)
    pipe.load_lora_weights(write(random_spec(seed=32), "original"), adapter_name="a")
    pipe.set_adapters("a", 0.5)
    pipe.fuse_lora()
    assert len(dropped) == 3
