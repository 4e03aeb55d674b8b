"""Temporal attention kernel vs the float64 reference (CPU interpreter; real shapes under -m gpu)."""
from __future__ import annotations

import logging

import pytest
import torch

pytest.importorskip("triton")

from tests.kernels.conftest import (  # noqa: E402
    DEVICE,
    HAS_CUDA,
    assert_close_to_reference,
    poisoned,
    randn,
    requires_cuda,
    strided_like,
)
from vdrt import ops  # noqa: E402
from vdrt.kernels import temporal_attention as ta  # noqa: E402


def _qkv(b, f, s, h, d, dtype):
    return [randn(b, f, s, h, d, dtype=dtype) for _ in range(3)]


def _check(q, k, v, mult=3.0, **launch_kw):
    out = ta.launch(q, k, v, out=poisoned(q.shape, q.dtype, q.device), **launch_kw)
    ref64 = ta.reference(q.double(), k.double(), v.double())
    return assert_close_to_reference(out, ref64, ta.reference(q, k, v), mult=mult)


@pytest.mark.parametrize("d", [40, 64, 72, 128])
@pytest.mark.parametrize("t", [1, 5, 16, 25])
def test_matches_float64_reference_bf16(t, d):
    _check(*_qkv(1, t, 3, 2, d, torch.bfloat16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_other_dtypes(dtype):
    _check(*_qkv(1, 16, 2, 2, 64, dtype))


@pytest.mark.parametrize("t", [33, 64])
def test_long_sequences_take_the_2d_path(t):
    assert ta.launch_config(t, 64)[0] == 1
    _check(*_qkv(1, t, 1, 1, 64, torch.bfloat16))


def test_many_programs_and_a_partial_tail():
    q, k, v = _qkv(3, 5, 7, 1, 40, torch.bfloat16)  # 21 sequences = 2 full programs + 5
    assert 21 % ta.launch_config(5, 40)[0] != 0
    _check(q, k, v)


def test_fused_qkv_views_need_no_copy():
    qkv = randn(2, 5, 3, 3, 2, 64, dtype=torch.bfloat16)  # (B, F, S, 3, H, D)
    q, k, v = qkv.unbind(3)
    assert not q.is_contiguous() and ta._vec(q, k, v) == 8
    _check(q, k, v)


def test_odd_strides_use_unvectorized_loads():
    q, k, v = (strided_like(x, pad=3) for x in _qkv(1, 5, 2, 2, 40, torch.bfloat16))
    assert ta._vec(q, k, v) == 1
    _check(q, k, v)


def test_custom_op_matches_launcher():
    q, k, v = _qkv(1, 5, 2, 2, 40, torch.bfloat16)
    torch.testing.assert_close(torch.ops.vdrt.temporal_attention(q, k, v), ta.launch(q, k, v), rtol=0, atol=0)


def test_fake_impl_gives_shapes_without_running():
    from torch._subclasses import FakeTensorMode

    q = randn(2, 5, 3, 2, 40, dtype=torch.bfloat16)[:, :, :, :1]  # a strided view
    with FakeTensorMode() as mode:
        out = torch.ops.vdrt.temporal_attention(*(mode.from_tensor(q) for _ in range(3)))
    assert out.shape == q.shape and out.dtype == q.dtype


class _Block(torch.nn.Module):
    def forward(self, q, k, v):
        return torch.ops.vdrt.temporal_attention(q, k, v) * 2.0


def test_export_keeps_the_op_and_runs():
    q, k, v = _qkv(1, 5, 2, 2, 40, torch.bfloat16)
    ep = torch.export.export(_Block(), (q, k, v))
    assert "vdrt.temporal_attention" in ep.graph_module.code
    torch.testing.assert_close(ep.module()(q, k, v), _Block()(q, k, v), rtol=0, atol=0)


def test_torch_compile_runs_the_op():
    q, k, v = _qkv(1, 5, 2, 2, 40, torch.bfloat16)
    try:
        compiled = torch.compile(_Block(), fullgraph=True)
        out = compiled(q, k, v)
    except Exception as e:  # noqa: BLE001  (CPU inductor may lack a compiler)
        if HAS_CUDA:
            raise
        pytest.skip(f"torch.compile cannot compile on this CPU machine: {type(e).__name__}: {e}"[:300])
    torch.testing.assert_close(out, _Block()(q, k, v), rtol=0, atol=0)


def test_registry_picks_the_kernel_and_falls_back_with_a_log_line(caplog):
    q, k, v = _qkv(1, 5, 2, 2, 40, torch.bfloat16)
    assert "vdrt" in ops.available("temporal_attention")
    assert ta.supports(q, k, v)
    with ops.use(temporal_attention="vdrt"):
        out = ops.temporal_attention(q, k, v)
        torch.testing.assert_close(out, ta.launch(q, k, v), rtol=0, atol=0)
        big = _qkv(1, 5, 2, 2, 256, torch.bfloat16)  # head dim 256: not supported
        assert not ta.supports(*big)
        ops._WARNED.discard(("temporal_attention", "vdrt"))
        with caplog.at_level(logging.WARNING, logger="vdrt.ops"):
            out = ops.temporal_attention(*big)
    assert any("torch fallback" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(out, ops.temporal_attention_torch(*big), rtol=0, atol=0)


def test_supports_rejects_what_the_kernel_cannot_take():
    q, k, v = _qkv(1, 5, 2, 2, 40, torch.bfloat16)
    assert not ta.supports(q, k, v.float())  # mixed dtypes
    assert not ta.supports(*_qkv(1, 65, 1, 1, 40, torch.bfloat16))  # T > 64
    assert not ta.supports(q.transpose(-1, -2).contiguous().transpose(-1, -2), k, v)  # strided D
    assert not ta.supports(q.to(torch.int32), k.to(torch.int32), v.to(torch.int32))


# ---------------------------------------------------------------- GPU, real shapes

GPU_SHAPES = [  # (B, F, S, H, D)
    (1, 16, 4096, 16, 64),
    (1, 25, 9216, 5, 64),
    (1, 16, 2048, 16, 72),
    (2, 16, 32768, 2, 64),  # B*S*H = 2^17 sequences
    (1, 5, 1024, 8, 40),
    (1, 64, 512, 4, 128),
    (1, 33, 512, 4, 128),
]


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_matches_float64_reference(shape, dtype):
    _check(*_qkv(*shape, dtype=dtype))


@pytest.mark.gpu
@requires_cuda
def test_gpu_fused_qkv_layout_and_op():
    qkv = randn(1, 16, 1024, 3, 12, 64, dtype=torch.bfloat16)
    q, k, v = qkv.unbind(3)
    _check(q, k, v)
    torch.testing.assert_close(torch.ops.vdrt.temporal_attention(q, k, v), ta.launch(q, k, v), rtol=0, atol=0)


@pytest.mark.gpu
@requires_cuda
def test_gpu_torch_compile_and_cuda_graph():
    q, k, v = _qkv(1, 16, 256, 8, 64, torch.bfloat16)
    want = _Block()(q, k, v)
    got = torch.compile(_Block(), fullgraph=True)(q, k, v)
    # inductor fuses the ops around ours differently: 1 bf16 ulp on < 0.1% of elements (H100: 36 of 2M)
    assert (got != want).float().mean().item() < 1e-3
    torch.testing.assert_close(got, want, rtol=2**-7, atol=2**-6)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = _Block()(q, k, v)
    q.copy_(randn(*q.shape, dtype=q.dtype))
    graph.replay()
    torch.testing.assert_close(out, _Block()(q, k, v), rtol=0, atol=0)


@pytest.mark.gpu
@requires_cuda
def test_gpu_registry_auto_picks_the_kernel():
    q, k, v = _qkv(1, 16, 64, 4, 64, torch.bfloat16)
    assert ta.supports(q, k, v) and not ta.supports(q.float(), k.float(), v.float())
    torch.testing.assert_close(ops.temporal_attention(q, k, v), ta.launch(q, k, v), rtol=0, atol=0)
    assert DEVICE == "cuda"
