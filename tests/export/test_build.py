"""AOTI and ONNX engines of wan-tiny and factorized-tiny: built, loaded, equal to eager at two shapes in the profile."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

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
    assert m["backend"] == backend and m["format_version"] == 2 and m["precision"] == "fp32"
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


LIBSTDCXX = "/lib/x86_64-linux-gnu/libstdc++.so.6"


@pytest.mark.skipif(not os.path.exists(LIBSTDCXX), reason=f"no {LIBSTDCXX} here")
def test_aoti_engine_loads_after_the_preload_reexec(engines):
    """The LD_PRELOAD fix end to end: a program calls ensure_preload(force=True), re-executes itself with the
    preload, then loads and runs a real AOTI package (what the lent GPU image needs)."""
    _, _, out = engines("factorized-tiny", "aoti")
    code = textwrap.dedent(f"""
        import os, torch
        from vdrt.engines.aoti import ensure_preload
        ensure_preload(force=True)
        import vdrt
        eng = vdrt.load_engine({str(out)!r})
        y = eng(torch.randn(1, 3, 3, 16, 16), torch.rand(1) * 1000, torch.randn(1, 4, 64))
        print(os.environ.get("LD_PRELOAD"), tuple(y.shape), bool(torch.isfinite(y).all()))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "VDRT_AOTI_PRELOADED")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == f"{LIBSTDCXX} (1, 3, 3, 16, 16) True"


@pytest.mark.gpu
@pytest.mark.parametrize("backend, forced", [("aoti", {}), ("aoti", {"adaln_modulate": "vdrt", "rope_qk_norm": "vdrt"}),
                                             ("onnx", {})], ids=["aoti", "aoti-kernels-inside", "onnx"])
def test_gpu_engine_bf16_matches_eager_and_graphs_replay(tmp_path, backend, forced):
    if backend == "onnx":
        ort = pytest.importorskip("onnxruntime")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
    from vdrt.engines.loading import load

    den = vdrt.load_denoiser("wan-tiny", dtype=torch.bfloat16, device="cuda")
    with vdrt.ops.use(**forced):  # forced: our Triton kernels compiled into the package as triton_ops
        eng = vdrt.export.build(den, backend, tmp_path / "e", precision="bf16", shapes=SHAPES["wan-tiny"],
                                cache=False)
    assert eng.manifest["device"]["type"] == "cuda" and eng.device.type == "cuda"
    graphed = load(tmp_path / "e", cuda_graphs=True) if backend == "aoti" else None
    for i, (b, f, h, w, t) in enumerate(CALLS["wan-tiny"] * 2):
        x = [v.cuda() for v in random_call(den.config, b, f, h, w, t, seed=i)]
        x[0], x[2] = x[0].bfloat16(), x[2].bfloat16()
        want, got = den(*x), eng(*x)
        assert rel_err(got, want) <= 2e-2  # bf16 compiled vs bf16 eager: different fusion and rounding
        if graphed is not None:
            torch.testing.assert_close(graphed(*x), got, rtol=0, atol=0)


def test_existing_out_is_refused_before_export_unless_force(tmp_path):
    from vdrt.errors import ConfigError

    out = tmp_path / "e"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    den = vdrt.load_denoiser("wan-tiny")
    with pytest.raises(ConfigError, match="already exists.*force=True"):
        vdrt.export.build(den, "onnx", out, precision="fp32", shapes=SHAPES["wan-tiny"])
    assert (out / "manifest.json").read_text() == "{}"
