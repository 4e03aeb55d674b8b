"""What the CLI / Pipeline / engine-manifest wiring will call: `--lora PATH[:SCALE]` parsing, the `lora=`
argument of load_denoiser (checked before any model loads), all-or-nothing loading, manifest entries."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch

import vdrt
from tests.models.test_lora import assert_matches, base_model, fresh, merged, random_spec, save, write
from tests.models.test_lora_errors import assert_untouched
from vdrt.errors import CheckpointError, ConfigError
from vdrt.models import lora

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("text,expect", [
    ("style.safetensors", ("style.safetensors", 1.0)),
    ("style.safetensors:0.8", ("style.safetensors", 0.8)),
    ("loras/a b.safetensors:-0.5", ("loras/a b.safetensors", -0.5)),
    ("style.safetensors:1e-1", ("style.safetensors", 0.1)),
    ("C:/loras/style.safetensors", ("C:/loras/style.safetensors", 1.0)),  # a drive letter, not a scale
    ("C:/loras/style.safetensors:2", ("C:/loras/style.safetensors", 2.0)),
    ("odd:name", ("odd:name", 1.0)),
])
def test_parse_lora_flag(text, expect):
    assert lora.parse_lora_flag(text) == expect


@pytest.mark.parametrize("text,match", [
    ("style.safetensors:abc", "the scale 'abc' is not a number"),
    ("style.safetensors:", "the scale '' is not a number"),
    ("style.safetensors:nan", "must be a finite number"),
    ("style.safetensors:inf", "must be a finite number"),
    ("", "--lora needs a path"),
])
def test_parse_lora_flag_refuses(text, match):
    with pytest.raises(ConfigError, match=match):
        lora.parse_lora_flag(text)


def test_check_lora_arg_takes_paths_and_pairs(tmp_path):
    a, b = save(tmp_path, random_spec(seed=1), "original", "a"), save(tmp_path, random_spec(seed=2), "kohya", "b")
    assert lora.check_lora_arg(None) == []
    assert lora.check_lora_arg(a) == [(a, 1.0)]
    assert lora.check_lora_arg((a, 0.5)) == [(a, 0.5)]
    assert lora.check_lora_arg([a, (b, 2)]) == [(a, 1.0), (b, 2.0)]
    with pytest.raises(ConfigError, match="finite number"):
        lora.check_lora_arg([(a, math.inf)])
    with pytest.raises(ConfigError, match="paths or \\(path, scale\\) pairs"):
        lora.check_lora_arg([(a, 1.0, "x")])
    with pytest.raises(CheckpointError, match="does not exist"):
        lora.check_lora_arg([a, tmp_path / "missing.safetensors"])


def test_check_lora_arg_refuses_pickles_and_unknown_files_before_reading(tmp_path):
    pickled, other = tmp_path / "style.pt", tmp_path / "style.txt"
    pickled.write_bytes(b"not read")
    other.write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="style.pt is a pickle checkpoint; vdrt does not unpickle files by "
                                              "default.*--trust-pickle"):
        lora.check_lora_arg([(pickled, 0.5)], trust_pickle=False)
    assert lora.check_lora_arg([(pickled, 0.5)], trust_pickle=True) == [(str(pickled), 0.5)]
    assert lora.check_lora_arg([pickled]) == [(str(pickled), 1.0)]  # None: refused when read, if not trusted
    with pytest.raises(CheckpointError, match="style.txt is neither .safetensors nor a pickle"):
        lora.check_lora_arg([other], trust_pickle=True)


def test_load_denoiser_fuses_loras_in_order(tmp_path, record_property):
    a, b = random_spec(seed=3), random_spec(seed=4, rank=2)
    pa, pb = save(tmp_path, a, "diffusers", "a"), save(tmp_path, b, "original", "b")
    model = vdrt.load_denoiser("wan-tiny", lora=[(pa, 0.7), (pb, -1.2)])
    assert [(r["name"], r["fused"]) for r in lora.list_loras(model)] == [("a-diffusers", True), ("b-original", True)]
    assert not [n for n, _ in model.named_modules() if "vdrt_lora" in n]  # fused: zero run-time cost
    assert_matches(model, merged([(a, 0.7), (b, -1.2)]), record_property)


def test_load_denoiser_checks_lora_before_loading_the_model(tmp_path, monkeypatch):
    import vdrt.loader

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the LoRA argument was checked")

    monkeypatch.setattr(vdrt.loader, "_load", never)
    with pytest.raises(CheckpointError, match="does not exist"):
        vdrt.load_denoiser("wan-tiny", lora=[tmp_path / "missing.safetensors"])
    with pytest.raises(ConfigError, match="finite number"):
        vdrt.load_denoiser("wan-tiny", lora=[(save(tmp_path, random_spec(seed=5), "original"), math.nan)])


def test_a_failing_lora_stops_all_before_any_is_applied(tmp_path):
    good = save(tmp_path, random_spec(seed=6), "original", "good")
    bad = write(random_spec(seed=7), "original")
    bad["diffusion_model.blocks.0.ffn.0.lora_up.weight"] = torch.randn(300, 4)  # wrong size
    model = fresh()
    with pytest.raises(CheckpointError, match="does not fit this model"):
        lora.apply_loras(model, [(good, 1.0), (bad, 1.0)])
    assert_untouched(model)


def test_lora_manifest_entries_record_file_sha256_and_scale(tmp_path):
    pa, pb = save(tmp_path, random_spec(seed=8), "original", "a"), save(tmp_path, random_spec(seed=9), "kohya", "b")
    model = fresh()
    lora.load_lora(model, pa, scale=0.8, fuse=True)
    lora.load_lora(model, pb, adapter_name="b", scale=0.3)
    lora.load_lora(model, write(random_spec(seed=10), "original"), adapter_name="off")
    lora.disable_lora(model, "off")  # an inactive adapter is not in the engine
    entries = lora.lora_manifest_entries(model)
    assert entries == [
        dict(name="a-original", file="a-original.safetensors", sha256=_sha(pa), scale=0.8, fused=True),
        dict(name="b", file="b-kohya.safetensors", sha256=_sha(pb), scale=0.3, fused=False),
    ]
    assert lora.lora_manifest_entries(base_model()) == []


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_check_engine_loras_accepts_the_build_loras_only(tmp_path):
    pa, pb = save(tmp_path, random_spec(seed=11), "original", "a"), save(tmp_path, random_spec(seed=12), "kohya", "b")
    model = fresh()
    lora.apply_loras(model, [(pa, 0.8)])
    entries = lora.lora_manifest_entries(model)
    lora.check_engine_loras(entries, [(pa, 0.8)])
    for asked in ([(pa, 0.5)], [(pb, 0.8)], [], [(pa, 0.8), (pb, 1.0)]):
        with pytest.raises(ConfigError, match=r"built with LoRAs \[a-original.safetensors:0.8\].*need a rebuild"):
            lora.check_engine_loras(entries, asked)
    with pytest.raises(ConfigError, match=r"built with LoRAs \[none\]"):
        lora.check_engine_loras([], [(pa, 1.0)])


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_bf16_loras_cost_no_more_than_bf16_itself(fuse, tmp_path, record_property):
    """In bf16, fused (one rounding of weight + delta) or unfused (bf16 down/up beside the layer), the error
    against the fp32 merge stays within 1.5x that of the fp32 merge simply cast to bf16."""
    from tests.models.test_lora import forward, tiny_inputs
    from tests.models.test_wan import rel_err

    spec = random_spec(seed=13)
    path = save(tmp_path, spec, "original")
    if fuse:
        model = vdrt.load_denoiser("wan-tiny", dtype=torch.bfloat16, lora=[(path, 0.9)])
    else:
        model = vdrt.load_denoiser("wan-tiny", dtype=torch.bfloat16)
        lora.load_lora(model, path, scale=0.9)
    exact = merged([(spec, 0.9)])
    x = tiny_inputs()
    x16 = {k: v.to(torch.bfloat16) for k, v in x.items()}
    want = forward(exact, x)
    err = rel_err(forward(model, x16).float(), want)
    budget = rel_err(forward(exact.to(torch.bfloat16), x16).float(), want)
    record_property("rel_err_bf16_lora_vs_fp32_merge", err)
    record_property("rel_err_bf16_cast_merge_vs_fp32_merge", budget)
    assert err <= 1.5 * budget
