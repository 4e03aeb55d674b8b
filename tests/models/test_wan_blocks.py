"""Wan self-attention under 8-bit attention: q and k quantised by the rope kernel (op rope_attention) against the
unfused path (rope, then the 8-bit attention's own quantisers), on the CPU emulation of both, whole model."""
from __future__ import annotations

import logging

import pytest
import torch

from vdrt import ops
from vdrt.models.wan import WanConfig, WanModel
from vdrt.sparse import SparseConfig

pytest.importorskip("triton")

log = logging.getLogger(__name__)
# (1, 16, 4, 16, 16) latents: a (4, 8, 8) grid of 256 tokens
SHAPE = (1, 16, 4, 16, 16)


def _model_and_inputs():
    model = WanModel(WanConfig.from_name("wan-tiny")).eval()
    with torch.no_grad():  # a per-channel bias on k (and so on its rope output): what smoothing is for
        for block in model.blocks:
            block.self_attn.k.bias.add_(2.0 * torch.randn_like(block.self_attn.k.bias))
    return model, (torch.randn(*SHAPE), torch.tensor([700.0]), torch.randn(1, 7, 64))


def _rel(a, b):
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("attention", ["vdrt-int8", "vdrt-sparse-int8"])
def test_fused_quantisation_equals_unfused_when_the_centre_is_the_mean(attention):
    """256 tokens <= CENTRE_SAMPLES: k's sampled centre is its mean, so fused == unfused exactly."""
    model, args = _model_and_inputs()
    sparse = SparseConfig(window=(2, 1, 1), tile=(2, 4, 4)) if attention.startswith("vdrt-sparse") else None
    with torch.no_grad(), ops.use(attention=attention, sparse=sparse):
        fused = model(*args)
        with ops.use(rope_attention="torch"):
            unfused = model(*args)
    assert torch.equal(fused, unfused)


@pytest.mark.parametrize("attention", ["vdrt-int8", "vdrt-sparse-int8"])
def test_fused_quantisation_with_a_sampled_centre_stays_close(monkeypatch, attention):
    """k centred on 16 of 256 tokens (exact math: softmax ignores the centre; only the rounding changes): the
    model moves by less than half of what the 8-bit attention itself costs (measured 25% dense, 13% sparse),
    and its error vs exact attention stays within 1.2x the unfused one's (measured 1.00x)."""
    from vdrt.kernels import rope_quant as RQ

    model, args = _model_and_inputs()
    sparse = SparseConfig(window=(2, 1, 1), tile=(2, 4, 4)) if attention.startswith("vdrt-sparse") else None
    monkeypatch.setattr(RQ, "CENTRE_SAMPLES", 16)
    with torch.no_grad(), ops.use(attention=attention, sparse=sparse):
        fused = model(*args)
        with ops.use(rope_attention="torch"):
            unfused = model(*args)
    exact_name = "vdrt-sparse" if sparse else "torch"
    with torch.no_grad(), ops.use(attention=exact_name, sparse=sparse):
        exact = model(*args)
    moved, cost = _rel(fused, unfused), _rel(unfused, exact)
    log.info("wan-tiny %s: fused vs unfused %.2e, unfused vs exact %.2e, fused vs exact %.2e", attention, moved,
             cost, _rel(fused, exact))
    assert 0 < moved < 0.5 * cost
    assert _rel(fused, exact) < 1.2 * cost


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fused_int8_eager_graph_compile_and_unfused():
    """wan-tiny (one head of 128) with vdrt-int8 on the GPU: the fused kernels run, CUDA-graph replay equals eager
    bit for bit, torch.compile (rope_quant and the codes op as triton_ops) matches eager, and fused stays within
    half the 8-bit cost of the unfused path (as on the CPU emulation)."""
    from vdrt.engines.torch import TorchEngine

    torch.manual_seed(0)
    model = WanModel(WanConfig.from_name("wan-tiny", num_heads=1)).cuda().to_dtype(torch.bfloat16).eval()
    x = torch.randn(1, 16, 8, 64, 64, device="cuda", dtype=torch.bfloat16)  # (8, 32, 32): 8192 tokens
    t, ctx = torch.tensor([400.0], device="cuda"), torch.randn(1, 7, 64, device="cuda", dtype=torch.bfloat16)
    eng = TorchEngine(model, cuda_graphs=True)
    with torch.inference_mode():
        exact = model(x, t, ctx)
        with ops.use(attention="vdrt-int8"):
            eager = model(x, t, ctx)
            assert torch.equal(eng(x, t, ctx), eager)
            got = torch.compile(model)(x, t, ctx)
            with ops.use(rope_attention="torch"):
                unfused = model(x, t, ctx)
    assert (got.float() - eager.float()).abs().max() <= 2e-2 * eager.float().abs().max()
    moved, cost = _rel(eager, unfused), _rel(unfused, exact)
    log.info("gpu wan-tiny int8: fused vs unfused %.2e, unfused vs exact %.2e", moved, cost)
    assert 0 < moved < 0.5 * cost or moved == 0
