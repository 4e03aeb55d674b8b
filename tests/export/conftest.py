"""Shared engines for export tests: built once per session into a private build cache.

AOTI compiles on the CPU take tens of seconds, so every engine is built once (session scope) at
small profiles, and tests that need "the same build again" (the CLI) hit this cache.
"""
from __future__ import annotations

import os

import pytest
from export_helpers import SHAPES


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("vdrt-cache")
    old = os.environ.get("VDRT_CACHE")
    os.environ["VDRT_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("VDRT_CACHE", None)
    else:
        os.environ["VDRT_CACHE"] = old


@pytest.fixture(scope="session")
def engines(build_cache, tmp_path_factory):
    """engines(name, backend) -> (eager module, loaded engine, engine dir); built once per session."""
    import vdrt

    built = {}

    def get(name: str, backend: str):
        if (name, backend) not in built:
            den = vdrt.load_denoiser(name)
            out = tmp_path_factory.mktemp("engines") / f"{name}-{backend}"
            eng = vdrt.export.build(den, backend, out, precision="fp32", shapes=SHAPES[name])
            built[name, backend] = (den, eng, out)
        return built[name, backend]

    return get


@pytest.fixture
def fake_onnx_build(monkeypatch, tmp_path):
    """A private build cache and an ONNX backend that writes a small random artifact (builds take a second);
    -> the work directories it was called with."""
    import importlib

    monkeypatch.setenv("VDRT_CACHE", str(tmp_path / "cache"))
    calls = []

    def build_artifacts(target, example, workdir, options):
        calls.append(workdir)
        (workdir / "model.onnx").write_bytes(os.urandom(256))
        return ["model.onnx"], {"export": 0.0, "compile": 0.0}, target.profile

    monkeypatch.setattr(importlib.import_module("vdrt.export.onnx"), "build_artifacts", build_artifacts)
    return calls


@pytest.fixture(scope="module")
def den():
    """The wan-tiny denoiser (random init), loaded once per module."""
    import vdrt

    return vdrt.load_denoiser("wan-tiny")
