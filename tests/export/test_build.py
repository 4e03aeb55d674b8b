"""AOTI and ONNX engines of wan-tiny and factorized-tiny: built, loaded, equal to eager at two shapes in the profile."""
from __future__ import annotations

import json

import pytest
import torch
from export_helpers import CALLS, SHAPES, random_call, rel_err

import vdrt
from vdrt.errors import ConfigError, EngineError

CASES = [("wan-tiny", "aoti"), ("wan-tiny", "onnx"), ("factorized-tiny", "aoti"), ("factorized-tiny", "onnx")]


@pytest.mark.parametrize("name, backend", CASES)
def test_engine_matches_eager_at_two_shapes(engines, name, backend):
    den, eng, _ = engines(name, backend)
    for i, (b, f, h, w, t) in enumerate(CALLS[name]):
        x = random_call(den.config, b, f, h, w, t, seed=i)
        want, got = den(*x), eng(*x)
        assert got.shape == want.shape == (b, den.config.out_channels, f, h, w)
        assert rel_err(got, want) <= 1e-4, (name, backend, (b, f, h, w, t))


@pytest.mark.parametrize("name, backend", CASES)
def test_manifest_describes_the_build(engines, name, backend):
    den, eng, out = engines(name, backend)
    m = json.loads((out / "manifest.json").read_text())
    assert m["backend"] == backend and m["format_version"] == 1 and m["precision"] == "fp32"
    assert vdrt.models.config_from_dict(m["model_config"]) == den.config
    assert [i["name"] for i in m["inputs"]] == ["latents", "timestep", "context"]
    assert m["device"] == {"type": "cpu", "name": "cpu", "sm": "cpu"}
    assert m["toolchain"]["torch"] == torch.__version__
    for dim, (lo, opt, hi) in SHAPES[name].items():
        assert (m["profiles"][dim]["min"], m["profiles"][dim]["opt"], m["profiles"][dim]["max"]) == (lo, opt, hi)
    artifact = {"aoti": "model.pt2", "onnx": "model.onnx"}[backend]
    assert artifact in m["artifacts"] and len(m["artifacts"][artifact]["sha256"]) == 64
    assert {"export", "compile"} <= set(m["build"]["seconds"])
    assert eng.config == den.config and eng.dtype == torch.float32 and eng.device.type == "cpu"


@pytest.mark.parametrize("backend", ["aoti", "onnx"])
def test_call_outside_profile_names_the_dim(engines, backend):
    den, eng, _ = engines("wan-tiny", backend)
    with pytest.raises(EngineError, match=r"frames=7 .*\[1, 5\]"):
        eng(*random_call(den.config, 1, 7, 8, 8, 4))
    with pytest.raises(EngineError, match=r"height=9 .*multiple of 2"):
        eng(*random_call(den.config, 1, 3, 9, 8, 4))


def test_reloaded_engine_and_pipeline_from_engine_dir(engines):
    den, _, out = engines("factorized-tiny", "aoti")
    eng = vdrt.load_engine(out)
    x = random_call(den.config, 1, 3, 16, 16, 16, seed=3)
    assert rel_err(eng(*x), den(*x)) <= 1e-4
    pipe = vdrt.Pipeline.from_pretrained(str(out), device="cpu")
    video = pipe("a red circle bouncing", num_frames=5, height=32, width=32, num_steps=2, progress=False)
    assert video.frames.shape == (5, 32, 32, 3)
    assert video.frames.std() > 0  # random weights still move pixels


def test_bad_shapes_and_options_fail_before_export():
    den = vdrt.load_denoiser("wan-tiny")
    good = dict(SHAPES["wan-tiny"])
    with pytest.raises(ConfigError, match="multiples of 2"):
        vdrt.export.build(den, "onnx", "/tmp/never", precision="fp32", shapes={**good, "height": (3, 8, 16)})
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        vdrt.export.build(den, "onnx", "/tmp/never", precision="fp32", shapes={**good, "frames": (5, 3, 9)})
    with pytest.raises(ConfigError, match="unknown backend"):
        vdrt.export.build(den, "tvm", "/tmp/never", precision="fp32", shapes=good)
    with pytest.raises(ConfigError, match="unknown precision"):
        vdrt.export.build(den, "onnx", "/tmp/never", precision="fp64", shapes=good)
    with pytest.raises(ConfigError, match="shapes lack"):
        vdrt.export.build(den, "onnx", "/tmp/never", precision="fp32", shapes={"frames": (1, 1, 1)})


def test_out_that_is_not_an_engine_dir_is_not_replaced(engines, tmp_path):
    from vdrt.export.cache import publish

    _, _, out = engines("factorized-tiny", "onnx")
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(EngineError, match="not an engine directory"):
        publish(out, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
