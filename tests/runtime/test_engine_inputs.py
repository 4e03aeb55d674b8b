"""Engine inputs are checked before they reach a backend: types, real floating dtypes, ranks, finiteness; a switch
turns the checks off for benchmarks. The same rules for the eager TorchEngine and a compiled (ONNX) engine."""
from __future__ import annotations

import pytest
import torch

import vdrt
from vdrt.engines import base
from vdrt.engines.torch import TorchEngine
from vdrt.errors import EngineError, InputTypeError


def _good():
    return torch.randn(1, 3, 2, 8, 8), torch.tensor([500.0]), torch.randn(1, 4, 64)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    out = {"torch": TorchEngine(vdrt.load_denoiser("factorized-tiny"))}
    if pytest.importorskip("onnxruntime") and pytest.importorskip("onnx"):
        from tests.runtime.integrity_helpers import write_engine

        out["onnx"] = vdrt.load_engine(write_engine(tmp_path_factory.mktemp("e") / "eng"))
    return out


def _bad(which: str):
    x, t, c = _good()
    nan = float("nan")
    return {
        "nan latents": ((x.index_fill(2, torch.tensor([1]), nan), t, c), EngineError, r"\['latents'\] hold NaN"),
        "inf context": ((x, t, c.index_fill(1, torch.tensor([0]), float("inf"))), EngineError, r"\['context'\]"),
        "nan timestep": ((x, torch.tensor([nan]), c), EngineError, r"\['timestep'\]"),
        "complex latents": ((x.to(torch.complex64), t, c), EngineError, "latents has dtype torch.complex64"),
        "int latents": (((x * 10).long(), t, c), EngineError, "latents has dtype torch.int64"),
        "bool context": ((x, t, c > 0), EngineError, "context has dtype torch.bool"),
        "4-D latents": ((x[0], t, c), EngineError, r"latents must be \(B, C, F, H, W\)"),
        "2-D context": ((x, t, c[0]), EngineError, r"context must be \(B, T, text_dim\)"),
        "numpy latents": ((x.numpy(), t, c), InputTypeError, "latents must be a torch.Tensor"),
        "None context": ((x, t, None), InputTypeError, "context must be a torch.Tensor, not a NoneType"),
    }[which]


CASES = ["nan latents", "inf context", "nan timestep", "complex latents", "int latents", "bool context", "4-D latents",
         "2-D context", "numpy latents", "None context"]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("case", CASES)
def test_bad_engine_inputs_are_refused_naming_the_input(engines, backend, case):
    args, err, match = _bad(case)
    with pytest.raises(err, match=match) as e:
        engines[backend](*args)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_good_inputs_pass_and_a_number_is_a_timestep(engines, backend):
    x, t, c = _good()
    assert torch.isfinite(engines[backend](x, t, c)).all()
    assert torch.isfinite(engines[backend](x, 500, c)).all()
    assert torch.isfinite(engines[backend](x, torch.tensor([500]), c)).all()  # an integer timestep


def test_the_switch_turns_the_checks_off(engines):
    x, t, c = _good()
    base.set_input_checks(False)
    try:
        out = engines["onnx"](x.index_fill(2, torch.tensor([1]), float("nan")), t, c)
        assert torch.isnan(out).any()  # passed through, as a benchmark wants
    finally:
        base.set_input_checks(True)
    with pytest.raises(EngineError):
        engines["onnx"](x.index_fill(2, torch.tensor([1]), float("nan")), t, c)


def test_a_precision_the_runtime_does_not_know_is_never_float32(engines):
    eng = engines["onnx"]
    saved = eng.manifest["precision"]
    eng.manifest["precision"] = "fp64"
    try:
        with pytest.raises(EngineError, match="precision 'fp64' is not one of"):
            eng.dtype
    finally:
        eng.manifest["precision"] = saved
