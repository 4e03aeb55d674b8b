"""Extras: every optional module's error hint names the extra that installs it, and that extra exists."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vdrt.errors import EXTRAS, MissingDependency, require

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
DISTS = {"av": "av", "diffusers": "diffusers", "transformers": "transformers", "onnx": "onnx", "onnxscript": "onnxscript",
         "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "triton": "triton", "cuda.bindings": "cuda-python"}


def _extras() -> dict:
    try:
        import tomllib
    except ImportError:
        import tomli as tomllib
    if not PYPROJECT.is_file():
        pytest.skip("pyproject.toml is not beside the tests (installed-only run)")
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_the_named_extra_installs_the_module(module):
    reqs = " ".join(_extras()[EXTRAS[module]])
    assert DISTS[module] in reqs or "vdrt[" in reqs


def test_runtimes_and_exporters_are_apart_and_dev_composes_the_others():
    extras = _extras()
    assert not any("onnxruntime" in r for r in extras["onnx"])  # export never pulls a runtime in
    assert extras["ort"] == ["onnxruntime>=1.18"] and extras["ort-gpu"] == ["onnxruntime-gpu>=1.18"]
    assert "vdrt[onnx]" in extras["trt"]
    assert any(r.startswith("vdrt[") and "ort-gpu" not in r for r in extras["dev"])


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(MissingDependency, match=r"pip install 'vdrt\[ort\]'"):
        require("onnxruntime")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingDependency, match=r"vdrt\[video\]"):
        require("av")
