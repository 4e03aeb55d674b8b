"""Numbers: weights checked at load (dtype, NaN/Inf), engine inputs checked per call (dtype, rank, finiteness,
complex), NaN during sampling stopped naming the step, precisions never silently changed."""
from __future__ import annotations

import pytest
import torch

import vdrt
from tests.hardening.hardening_helpers import Ran, api_refusal, cli_refusal, record
from vdrt.engines.torch import TorchEngine

E = ValueError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vdrt.loader import save_native

    d = tmp_path_factory.mktemp("ckpt")
    save_native(vdrt.load_denoiser("factorized-tiny"), d)
    return d


def _broken(checkpoint, tmp_path, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint / "model.safetensors"))
    edit(state)
    out = tmp_path / "broken"
    out.mkdir()
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text((checkpoint / "config.json").read_text())
    return out


def _set(key, fn):
    def edit(state):
        state[key] = fn(state[key])
    return edit


WEIGHTS = [
    ("nan weight", _set("layers.0.spatial.ffn.fc1.weight", lambda w: w.index_fill(0, torch.tensor([2]), float("nan"))),
     ("NaN or Inf", "layers.0.spatial.ffn.fc1.weight")),
    ("inf bias", _set("head.proj.bias", lambda w: w.fill_(float("inf"))), ("NaN or Inf", "head.proj.bias")),
    ("-inf modulation", _set("layers.1.temporal.modulation", lambda w: w.fill_(-float("inf"))), ("NaN or Inf",)),
    ("int32 weight", _set("patch_embed.weight", lambda w: (w * 100).to(torch.int32)), ("torch.int32", "floating")),
    ("int64 weight", _set("time_mod.weight", lambda w: (w * 100).long()), ("torch.int64",)),
    ("bool weight", _set("time_mod.bias", lambda w: w > 0), ("torch.bool",)),
    ("uint8 weight", _set("head.proj.weight", lambda w: (w.abs() * 100).to(torch.uint8)), ("torch.uint8",)),
    ("complex weight", _set("head.proj.weight", lambda w: w.to(torch.complex64)), ("torch.complex64",)),
]


@pytest.mark.parametrize("name, edit, words", WEIGHTS, ids=[w[0] for w in WEIGHTS])
def test_broken_weights_are_refused_at_load(checkpoint, tmp_path, work, capsys, name, edit, words):
    model = _broken(checkpoint, tmp_path, edit)
    record("numbers: weights", f"load_denoiser: {name}",
           api_refusal(lambda: vdrt.load_denoiser(model), E, words, work))
    argv = ["generate", "x", "--model", str(model), "--frames", "2", "--height", "16", "--width", "16", "--steps", "1",
            "-o", "o.gif"]
    record("numbers: weights", f"vdrt generate: {name}", cli_refusal(argv, words, work, capsys))


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    out = {"torch": TorchEngine(vdrt.load_denoiser("factorized-tiny"))}
    pytest.importorskip("onnxruntime")
    from tests.runtime.integrity_helpers import write_engine

    out["onnx"] = vdrt.load_engine(write_engine(tmp_path_factory.mktemp("eng") / "e"))
    return out


def _inputs(case):
    x, t, c = torch.randn(1, 3, 2, 8, 8), torch.tensor([500.0]), torch.randn(1, 4, 64)
    nan, inf = float("nan"), float("inf")
    return {
        "nan latents": ((x.index_fill(3, torch.tensor([2]), nan), t, c), E, ("latents", "NaN")),
        "inf latents": ((x.index_fill(3, torch.tensor([2]), inf), t, c), E, ("latents",)),
        "nan context": ((x, t, c.index_fill(2, torch.tensor([5]), nan)), E, ("context",)),
        "inf timestep": ((x, torch.tensor([inf]), c), E, ("timestep",)),
        "complex latents": ((x.to(torch.complex64), t, c), E, ("complex64",)),
        "complex context": ((x, t, c.to(torch.complex128)), E, ("complex128",)),
        "int latents": (((x * 9).to(torch.int32), t, c), E, ("torch.int32",)),
        "bool timestep": ((x, torch.tensor([True]), c), E, ("torch.bool",)),
        "3-D latents": ((x[0, 0], t, c), E, ("(B, C, F, H, W)",)),
        "4-D context": ((x, t, c[None]), E, ("(B, T, text_dim)",)),
        "2-D timestep": ((x, t[None], c), E, ("timestep",)),
        "list latents": ((x.tolist(), t, c), TypeError, ("torch.Tensor",)),
    }[case]


INPUT_CASES = ["nan latents", "inf latents", "nan context", "inf timestep", "complex latents", "complex context",
               "int latents", "bool timestep", "3-D latents", "4-D context", "2-D timestep", "list latents"]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("case", INPUT_CASES)
def test_engine_inputs_are_checked(engines, backend, case, work):
    args, builtin, words = _inputs(case)
    record("numbers: engine inputs", f"{backend}: {case}", api_refusal(lambda: engines[backend](*args), builtin, words))


def test_nan_during_sampling_stops_naming_the_step(work, monkeypatch):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")
    real, calls = pipe.engine.module.forward, []

    def poisoned(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        return out * float("nan") if len(calls) == 2 else out
    monkeypatch.setattr(pipe.engine.module, "forward", poisoned)
    call = lambda: pipe("x", num_frames=2, height=16, width=16, num_steps=3, progress=False)  # noqa: E731
    record("numbers: sampling", "NaN at step 2", api_refusal(call, RuntimeError, ("step 2",), work))


def test_precisions_are_never_silently_changed(work, tmp_path):
    pipe = vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu", dtype="float64")
    ok = pipe.engine.dtype == torch.float64 and next(pipe.engine.module.parameters()).dtype == torch.float64
    record("numbers: precision", "fp64 eager runs in fp64", Ran("CLEAR" if ok else "WRONG", str(pipe.engine.dtype)))
    pytest.importorskip("onnxruntime")
    from tests.runtime.integrity_helpers import edit_manifest, write_engine

    d = write_engine(tmp_path / "e64")
    edit_manifest(d, lambda m: m.update(precision="fp64"))
    record("numbers: precision", "an fp64 engine manifest", api_refusal(lambda: vdrt.load_engine(d), E, ("precision",)))
