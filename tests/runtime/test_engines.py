"""Engine loading: manifest checks before any artifact is deserialized, device refusal, call-time profile checks.

The engine here is hand-made (a one-node ONNX graph, prediction = 2 * latents, and a manifest
written by the test), so these runtime checks are tested without the exporter.
"""
from __future__ import annotations

import json

import pytest
import torch
from integrity_helpers import PROFILES, onnx_double

import vdrt
from vdrt.engines import inspect_engine, load_engine
from vdrt.engines import manifest as mf
from vdrt.errors import EngineError
from vdrt.fsutil import sha256_file

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def write_engine(d, backend="onnx", device=None, **changes):
    """A valid engine directory: factorized-tiny's config, fp32, prediction = 2 * latents."""
    d.mkdir(parents=True, exist_ok=True)
    onnx_double(d / "model.onnx")
    cfg = vdrt.models.config_from_name("factorized-tiny").to_dict()
    grid = ["frames", "height", "width"]
    m = {"format_version": mf.FORMAT_VERSION, "vdrt_version": vdrt.__version__, "backend": backend, "model_config": cfg,
         "layout": "vdrt", "precision": "fp32",
         "inputs": [{"name": "latents", "dtype": "float32", "shape": ["batch", 3, *grid]},
                    {"name": "timestep", "dtype": "float32", "shape": ["batch"]},
                    {"name": "context", "dtype": "float32", "shape": ["batch", "text_len", 64]}],
         "outputs": [{"name": "prediction", "dtype": "float32", "shape": ["batch", 3, *grid]}],
         "profiles": {k: dict(zip(("min", "opt", "max", "multiple"), v)) for k, v in PROFILES.items()},
         "artifacts": _artifacts(d, backend),
         "toolchain": {}, "device": device or {"type": "cpu", "name": "cpu", "sm": "cpu"}, "build": {}}
    m.update(changes)
    m["fingerprint"] = mf.fingerprint(m)
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def _artifacts(d, backend):
    """The backend's artifact files (the non-onnx ones are stand-ins: these tests stop before loading them)."""
    names = {"onnx": ["model.onnx"], "aoti": ["model.pt2"], "tensorrt": ["model.plan", "timing.cache"]}[backend]
    if backend != "onnx":
        (d / "model.onnx").unlink()
        for n in names:
            (d / n).write_bytes(b"stand-in for " + n.encode())
    return {n: {"sha256": sha256_file(d / n), "bytes": (d / n).stat().st_size} for n in names}


def _edit_manifest(d, **changes):
    """A consistent edit (fingerprint recomputed), so the check under test is the one that refuses it."""
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    m["fingerprint"] = mf.fingerprint(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _call(engine, b=1, f=3, h=16, w=16, t=16, **cond):
    x = torch.randn(b, 3, f, h, w)
    return x, engine(x, torch.rand(b) * 1000, torch.randn(b, t, 64), **cond)


def test_loads_runs_and_exposes_the_protocol(tmp_path):
    eng = load_engine(write_engine(tmp_path / "e"))
    x, y = _call(eng, b=2, f=5, h=8, w=12, t=3)
    assert torch.equal(y, 2 * x)
    assert eng.device == torch.device("cpu") and eng.dtype == torch.float32
    assert eng.manifest["backend"] == "onnx"
    assert type(eng.config).__name__ == "FactorizedConfig" and eng.config.patch_size == (1, 4, 4)


def test_inspect_reads_the_manifest_without_loading(tmp_path):
    d = write_engine(tmp_path / "e")
    (d / "model.onnx").write_bytes(b"garbage")  # inspect must not care: it only reads JSON
    assert inspect_engine(d)["profiles"]["frames"]["max"] == 5


def test_tampered_artifact_is_refused_naming_the_file(tmp_path):
    d = write_engine(tmp_path / "e")
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"model\.onnx does not match its sha256"):
        load_engine(d)


def test_missing_artifact_is_refused(tmp_path):
    d = write_engine(tmp_path / "e")
    (d / "model.onnx").unlink()
    with pytest.raises(EngineError, match=r"model\.onnx is missing"):
        load_engine(d)


@pytest.mark.parametrize("version", [1, 3, 0, "2", None, True])
def test_unknown_format_version_is_refused(tmp_path, version):
    d = write_engine(tmp_path / "e")
    _edit_manifest(d, format_version=version)
    with pytest.raises(EngineError, match="format_version"):
        load_engine(d)


@pytest.mark.parametrize("changes, match", [
    ({"artifacts": {"../escape.onnx": {"sha256": "0", "bytes": 1}}}, "illegal artifact"),
    ({"backend": "tflite"}, "unknown backend"),
    ({"inputs": [{"name": "latents", "dtype": "complex32", "shape": []}]}, "unknown dtype"),
])
def test_malformed_manifest_is_refused(tmp_path, changes, match):
    d = write_engine(tmp_path / "e")
    _edit_manifest(d, **changes)
    with pytest.raises(EngineError, match=match):
        load_engine(d)


def test_manifest_missing_keys_and_bad_json(tmp_path):
    d = write_engine(tmp_path / "e")
    m = json.loads((d / "manifest.json").read_text())
    del m["profiles"]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EngineError, match="lacks.*'profiles'"):
        load_engine(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        load_engine(d)


CUDA_H100 = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "sm": "9.0"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
@pytest.mark.parametrize("backend", ["aoti", "tensorrt"])
def test_cuda_built_engine_is_refused_on_cpu(tmp_path, backend):
    d = write_engine(tmp_path / "e", backend=backend, device=CUDA_H100)
    with pytest.raises(EngineError, match="built for CUDA|built for NVIDIA H100"):
        load_engine(d)
    with pytest.raises(EngineError, match="cannot run on cpu"):
        load_engine(d, device="cpu")


def test_cuda_built_onnx_is_portable_to_cpu(tmp_path):
    eng = load_engine(write_engine(tmp_path / "e", device=CUDA_H100), device="cpu")
    x, y = _call(eng)
    assert torch.equal(y, 2 * x)


def test_cpu_built_aoti_is_refused_on_cuda_device(tmp_path):
    m = {"backend": "aoti", "device": {"type": "cpu", "name": "cpu", "sm": "cpu"}}
    with pytest.raises(EngineError, match="cannot run on cuda"):
        mf.check_device(m, torch.device("cuda", 0))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["aoti", "tensorrt"])
def test_other_gpu_arch_is_refused(tmp_path, backend):
    major, minor = torch.cuda.get_device_capability()
    fake = {"type": "cuda", "name": "a future GPU", "sm": f"{major + 1}.{minor}"}
    d = write_engine(tmp_path / "e", backend=backend, device=fake)
    with pytest.raises(EngineError, match="cannot run its kernels"):
        load_engine(d)


@pytest.mark.parametrize("kw, match", [
    (dict(f=6), r"frames=6 \(input latents\) is outside this engine's profile: frames must be in \[1, 5\]"),
    (dict(h=40), r"height=40 .*must be in \[4, 32\]"),
    (dict(w=18), r"width=18 .*must be a multiple of 4"),
    (dict(b=3), r"batch=3 .*\[1, 2\]"),
    (dict(t=33), r"text_len=33 .*\[1, 32\]"),
    (dict(cond=torch.zeros(1)), r"takes no input\(s\) \['cond'\]"),
])
def test_shapes_outside_the_profile_are_refused_naming_the_dim(tmp_path, kw, match):
    eng = load_engine(write_engine(tmp_path / "e"))
    with pytest.raises(EngineError, match=match):
        _call(eng, **kw)


def test_inconsistent_and_misshapen_inputs(tmp_path):
    eng = load_engine(write_engine(tmp_path / "e"))
    x = torch.randn(2, 3, 3, 16, 16)
    with pytest.raises(EngineError, match=r"batch differs between inputs latents \(2\) and context \(1\)"):
        eng(x, torch.rand(2), torch.randn(1, 4, 64))
    with pytest.raises(EngineError, match=r"input latents must have shape \(batch, 3, frames"):
        eng(torch.randn(1, 4, 3, 16, 16), torch.rand(1), torch.randn(1, 4, 64))


def test_scalar_timestep_is_expanded_and_dtypes_follow_the_manifest(tmp_path):
    eng = load_engine(write_engine(tmp_path / "e"))
    x = torch.randn(2, 3, 3, 8, 8, dtype=torch.float64)
    y = eng(x, 500.0, torch.randn(2, 4, 64))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, (2 * x).float())


def test_tensorrt_missing_says_how_to_install():
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    from vdrt.engines.tensorrt import TensorRTMissing, import_tensorrt

    with pytest.raises(TensorRTMissing, match=r"pip install tensorrt --extra-index-url https://pypi\.nvidia\.com"):
        import_tensorrt()


def test_pipeline_runs_an_engine_directory(tmp_path):
    pipe = vdrt.Pipeline.from_pretrained(str(write_engine(tmp_path / "e")), device="cpu")
    video = pipe("a red circle", num_frames=3, height=16, width=16, num_steps=1, progress=False)
    assert video.frames.shape == (3, 16, 16, 3) and video.frames.dtype.name == "uint8"


def test_big_artifacts_are_checked_chunk_by_chunk(tmp_path, monkeypatch):
    from vdrt import fsutil
    from vdrt.export import manifest as export_manifest

    d = write_engine(tmp_path / "e")
    blob = d / "weights.bin"
    blob.write_bytes(torch.randint(0, 256, (5 * 4096 + 17,), dtype=torch.uint8).numpy().tobytes())
    monkeypatch.setattr(fsutil, "CHUNK_BYTES", 4096)
    recs = export_manifest.artifact_records(d, ["model.onnx", "weights.bin"])
    assert "chunk_sha256" not in recs["model.onnx"] and len(recs["weights.bin"]["chunk_sha256"]) == 6
    assert recs["weights.bin"]["chunk_sha256"] == fsutil.sha256_chunks(blob, 4096, workers=1)
    _edit_manifest(d, artifacts=recs)
    load_engine(d)
    data = bytearray(blob.read_bytes())
    data[3 * 4096 + 5] ^= 0x10  # one bit in the fourth chunk
    blob.write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"weights\.bin does not match its sha256"):
        load_engine(d)


@pytest.mark.parametrize("bad", [{"chunk_bytes": 16}, {"chunk_bytes": "4096"}, {"chunk_sha256": "abc"}])
def test_malformed_chunk_records_never_pass(tmp_path, bad):
    from vdrt import fsutil

    d = write_engine(tmp_path / "e")
    rec = {"sha256": sha256_file(d / "model.onnx"), "bytes": (d / "model.onnx").stat().st_size,
           "chunk_bytes": 4096, "chunk_sha256": fsutil.sha256_chunks(d / "model.onnx", 4096), **bad}
    _edit_manifest(d, artifacts={"model.onnx": rec})
    with pytest.raises(EngineError, match="does not match its sha256|chunk"):
        load_engine(d)
