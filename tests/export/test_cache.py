"""The build cache: a second build reuses the entry, keys follow their inputs, concurrent builds give one
result, a corrupted entry is detected and rebuilt, a failed build leaves nothing behind.

The backend is replaced by a fake that writes a small artifact and counts its calls, so these
tests run in seconds; the real-backend cache hit is covered by test_cli (it reuses a session build).
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from export_helpers import SHAPES

import vdrt
from vdrt.errors import ConfigError

onnx_backend = importlib.import_module("vdrt.export.onnx")


@pytest.fixture
def fake_backend(monkeypatch, tmp_path):
    monkeypatch.setenv("VDRT_CACHE", str(tmp_path / "cache"))
    calls = []

    def build_artifacts(target, example, workdir, options):
        calls.append(tuple(t.shape for t in example))
        (workdir / "model.onnx").write_bytes(os.urandom(256))
        return ["model.onnx"], {"export": 0.0, "compile": 0.0}, target.profile

    monkeypatch.setattr(onnx_backend, "build_artifacts", build_artifacts)
    return calls


def _build(den, out, **kw):
    kw = {"precision": "fp32", "shapes": SHAPES["wan-tiny"], **kw}
    return vdrt.export.build(den, "onnx", out, load=False, **kw)


def _entries(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir() and not p.name.startswith("."))


def test_second_build_is_a_cache_hit(fake_backend, tmp_path):
    den = vdrt.load_denoiser("wan-tiny")
    a, b = _build(den, tmp_path / "a"), _build(den, tmp_path / "b")
    assert len(fake_backend) == 1
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
    assert json.loads((a / "manifest.json").read_text()) == json.loads((b / "manifest.json").read_text())
    assert len(_entries(tmp_path)) == 1


def test_key_follows_weights_precision_and_shapes(fake_backend, tmp_path):
    den = vdrt.load_denoiser("wan-tiny")
    _build(den, tmp_path / "a")
    _build(den, tmp_path / "b", precision="bf16")
    _build(den, tmp_path / "c", shapes={**SHAPES["wan-tiny"], "frames": (1, 3, 7)})
    with vdrt.ops.use(attention="torch"):
        _build(den, tmp_path / "d")
    den.blocks[0].ffn[0].weight.data[0, 0] += 1.0
    _build(den, tmp_path / "e")
    assert len(fake_backend) == 5 and len(_entries(tmp_path)) == 5


def test_corrupted_entry_is_detected_and_rebuilt(fake_backend, tmp_path, caplog):
    den = vdrt.load_denoiser("wan-tiny")
    _build(den, tmp_path / "a")
    (entry,) = _entries(tmp_path)
    art = tmp_path / "cache" / entry / "model.onnx"
    data = bytearray(art.read_bytes())
    data[7] ^= 0xFF
    art.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="vdrt.export.cache"):
        out = _build(den, tmp_path / "b")
    assert len(fake_backend) == 2
    assert "corrupted" in caplog.text and "model.onnx" in caplog.text
    from vdrt.engines import manifest as mf

    mf.verify_artifacts(out, mf.read(out))  # the rebuilt entry and its copy are whole again
    mf.verify_artifacts(tmp_path / "cache" / entry, mf.read(tmp_path / "cache" / entry))


def test_failed_build_leaves_no_entry_and_keeps_out(monkeypatch, tmp_path):
    monkeypatch.setenv("VDRT_CACHE", str(tmp_path / "cache"))

    def broken(target, example, workdir, options):
        (workdir / "model.onnx").write_bytes(b"half")
        raise ConfigError("export failed half way")

    monkeypatch.setattr(onnx_backend, "build_artifacts", broken)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="half way"):
        _build(vdrt.load_denoiser("wan-tiny"), out)
    assert not out.exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []


WORKER = textwrap.dedent('''
    import hashlib, json, os, sys, time
    from pathlib import Path
    from vdrt.engines.manifest import fingerprint
    from vdrt.export.cache import get_or_build

    root, log = Path(sys.argv[1]), Path(sys.argv[2])

    def build_into(tmp):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(1.5)  # long enough for the other process to arrive and wait on the lock
        data = os.urandom(128)
        (tmp / "model.onnx").write_bytes(data)
        t = [{"name": "latents", "dtype": "float32", "shape": [1]}]
        m = {"format_version": 2, "vdrt_version": "x", "backend": "onnx", "model_config": {"family": "wan"},
             "layout": "vdrt", "precision": "fp32", "inputs": t, "outputs": t, "profiles": {}, "toolchain": {},
             "device": {"type": "cpu", "name": "cpu", "sm": "cpu"}, "build": {},
             "artifacts": {"model.onnx": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}}
        m["fingerprint"] = fingerprint(m)
        (tmp / "manifest.json").write_text(json.dumps(m))

    entry, hit = get_or_build("k" * 40, build_into, root)
    print(json.dumps({"hit": hit, "entry": str(entry), "sha": json.loads((entry / "manifest.json").read_text())
                      ["artifacts"]["model.onnx"]["sha256"]}))
''')


def test_concurrent_builds_of_one_key_give_one_result(tmp_path):
    log = tmp_path / "builds.log"
    cmd = [sys.executable, "-c", WORKER, str(tmp_path / "cache"), str(log)]
    # cwd outside the checkout: a `python -c` child puts its cwd first on sys.path, and the checkout's vdrt/
    # folder (without vdrt.export, which setup.py maps from export/) would shadow the installed package
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len(log.read_text().split()) == 1  # one build
    assert sorted(r["hit"] for r in results) == [False, True]
    assert results[0]["entry"] == results[1]["entry"] and results[0]["sha"] == results[1]["sha"]
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
    assert leftovers == []
