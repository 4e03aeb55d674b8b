"""TensorRT: the builder is written against the TensorRT 10 API and NOT run here (no TensorRT on any machine).

What is tested without TensorRT: the optimization-profile shapes, the install message of the
CLI and of `vdrt.export.build`, and the builder's calls against a recording stub of the
documented TRT 10 Python API (this checks our code paths, not TensorRT). The real build and
run test skips with the reason when tensorrt is missing.
"""
from __future__ import annotations

import importlib.util
import types

import pytest
import torch
from export_helpers import SHAPES
from vdrt.export import shapes as sh
from vdrt.export import tensorrt as trt_build

import vdrt
from vdrt.cli import main

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
INSTALL = r"pip install tensorrt --extra-index-url https://pypi\.nvidia\.com"


def _profile():
    c = vdrt.models.config_from_name("wan-tiny")
    return sh.profile(c, SHAPES["wan-tiny"]), sh.signature(c, torch.bfloat16)[0]


def test_profile_shapes_cover_every_dynamic_input():
    prof, inputs = _profile()
    got = {s["name"]: trt_build.profile_shapes(s, prof) for s in inputs}
    assert got["latents"] == ((1, 16, 1, 4, 4), (1, 16, 3, 8, 8), (2, 16, 5, 16, 16))
    assert got["timestep"] == ((1,), (1,), (2,))
    assert got["context"] == ((1, 1, 64), (1, 16, 64), (2, 32, 64))


@pytest.mark.parametrize("precision, options, want", [("bf16", {}, False), ("fp8", {}, True), ("int8", {}, True),
                                                      ("fp16", {"weight_streaming": True}, True),
                                                      ("bf16", {"strongly_typed": True}, True)])
def test_strongly_typed_for_quantized_and_weight_streaming(precision, options, want):
    assert trt_build.strongly_typed(precision, options) is want


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_build_without_tensorrt_fails_fast_saying_how_to_install(tmp_path):
    from vdrt.engines.tensorrt import TensorRTMissing

    with pytest.raises(TensorRTMissing, match=INSTALL):
        vdrt.export.build(vdrt.load_denoiser("wan-tiny"), "tensorrt", tmp_path / "e", precision="bf16",
                          shapes=SHAPES["wan-tiny"])
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_cli_without_tensorrt_exits_2_with_the_install_line(tmp_path, capsys):
    code = main(["build", "wan-tiny", "--backend", "tensorrt", "--frames", "9", "--height", "64", "--width", "64",
                 "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    import re

    assert re.search(INSTALL, err), err


class _Rec:
    """Records attribute calls: every method returns a new recorder, unless given in `returns`."""

    def __init__(self, log, name, returns=None):
        self._log, self._name, self._returns = log, name, returns or {}

    def __getattr__(self, attr):
        def call(*args, **kwargs):
            self._log.append((f"{self._name}.{attr}", args))
            return self._returns.get(attr, _Rec(self._log, attr, self._returns))
        return call

    def __setattr__(self, attr, value):
        if attr.startswith("_"):
            return object.__setattr__(self, attr, value)
        self._log.append((f"{self._name}.{attr}=", (value,)))


def _stub_trt(log):
    enum = lambda *names: types.SimpleNamespace(**{n: n for n in names})  # noqa: E731
    returns = {"build_serialized_network": b"PLAN", "parse_from_file": True, "serialize": b"TIMING"}
    stub = types.SimpleNamespace(
        __version__="10.8.0", Logger=types.SimpleNamespace(WARNING="W", VERBOSE="V"),
        Builder=lambda logger: _Rec(log, "builder", returns), OnnxParser=lambda net, lg: _Rec(log, "parser", returns),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=enum("WORKSPACE"), BuilderFlag=enum("FP16", "BF16", "WEIGHT_STREAMING"))
    stub.Logger = lambda level: ("logger", level)
    stub.Logger.WARNING, stub.Logger.VERBOSE = "W", "V"
    return stub


@pytest.mark.parametrize("precision, typed_flag, flags", [("bf16", 0, ["BF16"]), ("fp8", 2, []),
                                                           ("fp16", 0, ["FP16"])])
def test_builder_call_sequence_against_a_stub_of_the_trt10_api(tmp_path, precision, typed_flag, flags):
    log = []
    prof, inputs = _profile()
    plan, timing = trt_build.build_plan(_stub_trt(log), tmp_path / "model.onnx", inputs, prof,
                                        {"precision": precision}, b"OLD")
    names = [n for n, _ in log]
    assert (plan, timing) == (b"PLAN", b"TIMING")
    assert ("builder.create_network", (typed_flag,)) in log
    assert ("parser.parse_from_file", (str(tmp_path / "model.onnx"),)) in log
    assert [a[0] for n, a in log if n == "create_builder_config.set_flag"] == flags
    shapes = {a[0]: a[1:] for n, a in log if n == "create_optimization_profile.set_shape"}
    assert shapes["latents"] == trt_build.profile_shapes(inputs[0], prof) and set(shapes) == {"latents", "timestep",
                                                                                             "context"}
    assert ("create_builder_config.create_timing_cache", (b"OLD",)) in log
    assert names.index("create_builder_config.add_optimization_profile") < names.index(
        "builder.build_serialized_network")


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="tensorrt is not installed (NVIDIA's index only): " + INSTALL)
def test_tensorrt_engine_matches_eager(tmp_path):
    den = vdrt.load_denoiser("wan-tiny", dtype=torch.float32, device="cuda")
    eng = vdrt.export.build(den, "tensorrt", tmp_path / "e", precision="fp32", shapes=SHAPES["wan-tiny"])
    for shape in [(1, 16, 3, 8, 8), (2, 16, 5, 12, 16)]:
        x = (torch.randn(*shape, device="cuda"), torch.rand(shape[0], device="cuda") * 1000,
             torch.randn(shape[0], 7, 64, device="cuda"))
        want = den(*x)
        assert ((eng(*x) - want).norm() / want.norm()).item() <= 1e-2
