"""Weights are checked at load: a dtype the model takes (never cast silently), and finite."""
import json

import pytest
import torch
from safetensors.torch import save_file

import vdrt
from vdrt.errors import CheckpointError
from vdrt.loader import save_native


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    save_native(vdrt.load_denoiser("wan-tiny"), d)
    return d


def _edited(ckpt, tmp_path, edit):
    from safetensors.torch import load_file

    state = load_file(str(ckpt / "model.safetensors"))
    edit(state)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((ckpt / "config.json").read_text())
    return tmp_path


def test_a_clean_checkpoint_loads(ckpt):
    assert vdrt.load_denoiser(ckpt) is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_nonfinite_weight_is_refused_naming_it(ckpt, tmp_path, value):
    def edit(state):
        state["blocks.1.ffn.0.bias"][3] = value
    with pytest.raises(CheckpointError, match=r"NaN or Inf: \[blocks.1.ffn.0.bias \(1 of 256\)\]"):
        vdrt.load_denoiser(_edited(ckpt, tmp_path, edit))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64, torch.uint8])
def test_a_weight_of_a_dtype_the_model_does_not_take_is_refused_not_cast(ckpt, tmp_path, dtype):
    def edit(state):
        w = state["head.head.weight"]
        state["head.head.weight"] = (w * 10).to(dtype) if dtype != torch.bool else w > 0
    with pytest.raises(CheckpointError, match=rf"head.head.weight \({dtype}\).*floating point"):
        vdrt.load_denoiser(_edited(ckpt, tmp_path, edit))


def test_half_precision_weights_are_taken(ckpt, tmp_path):
    def edit(state):
        for k in state:
            state[k] = state[k].to(torch.bfloat16)
    model = vdrt.load_denoiser(_edited(ckpt, tmp_path, edit))
    assert next(model.parameters()).dtype == torch.float32  # loaded, then moved to the dtype asked
