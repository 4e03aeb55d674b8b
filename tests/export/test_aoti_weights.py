"""AOTI engines with external weights (`weights.safetensors` + load_constants) and with weights in the .so."""
from __future__ import annotations

import json

import pytest
import torch
from export_helpers import CALLS, SHAPES, random_call, rel_err

import vdrt
from vdrt.errors import ConfigError, EngineError
from vdrt.export.manifest import save as save_manifest
from vdrt.fsutil import sha256_file


def test_default_engine_keeps_weights_outside_the_package(engines):
    den, eng, out = engines("wan-tiny", "aoti")
    arts = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert sorted(arts) == ["model.pt2", "weights.safetensors"]
    from safetensors import safe_open

    with safe_open(str(out / "weights.safetensors"), framework="pt") as f:
        names = set(f.keys())
    params = dict(den.named_parameters())
    assert set(eng.model.get_constant_fqns()) <= names
    with safe_open(str(out / "weights.safetensors"), framework="pt") as f:
        for k in sorted(names & set(params))[:5]:  # the file holds the module's own values, not zeros
            assert torch.equal(f.get_tensor(k), params[k].detach())


def test_weights_in_so_option_builds_one_artifact_that_matches(tmp_path):
    den = vdrt.load_denoiser("wan-tiny")
    eng = vdrt.export.build(den, "aoti", tmp_path / "e", precision="fp32", shapes=SHAPES["wan-tiny"], cache=False,
                            aoti_weights="in_so")
    assert list(eng.manifest["artifacts"]) == ["model.pt2"]
    x = random_call(den.config, *CALLS["wan-tiny"][1], seed=3)
    with torch.no_grad():
        assert rel_err(eng(*x), den(*x)) <= 1e-4


def test_unknown_weights_mode_is_refused(tmp_path):
    den = vdrt.load_denoiser("wan-tiny")
    with pytest.raises(ConfigError, match="aoti_weights='pickle'"):
        vdrt.export.build(den, "aoti", tmp_path / "e", precision="fp32", shapes=SHAPES["wan-tiny"], cache=False,
                          aoti_weights="pickle")
    assert not (tmp_path / "e").exists()


def test_weights_file_lacking_a_constant_is_refused_naming_it(engines, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    _, eng, out = engines("wan-tiny", "aoti")
    d = tmp_path / "e"
    shutil.copytree(out, d)
    tensors = load_file(str(d / "weights.safetensors"))
    gone = sorted(eng.model.get_constant_fqns())[0]
    del tensors[gone]
    save_file(tensors, str(d / "weights.safetensors"))
    m = json.loads((d / "manifest.json").read_text())  # a consistent manifest: only the constant check can catch it
    m["artifacts"]["weights.safetensors"] = {"sha256": sha256_file(d / "weights.safetensors"),
                                             "bytes": (d / "weights.safetensors").stat().st_size}
    save_manifest(d, m)
    with pytest.raises(EngineError, match=f"lacks 1 constant.*{gone}"):
        vdrt.load_engine(d)


def test_elementwise_ops_on_auto_are_exported_in_torch_form_and_forced_ones_kept():
    from vdrt import ops
    from vdrt.export import aoti

    assert aoti.inductor_choices() == {op: "torch" for op in aoti.FUSED_BY_INDUCTOR}
    with ops.use(adaln_modulate="torch", rope_qk_norm="auto"):
        ops.set_choice("rms_norm", "torch")
        try:
            got = aoti.inductor_choices()
        finally:
            ops.set_choice("rms_norm", "auto")
    assert "adaln_modulate" not in got and "rms_norm" not in got and got["rope_qk_norm"] == "torch"
    assert set(aoti.FUSED_BY_INDUCTOR).isdisjoint({"attention", "temporal_attention", "linear"})
