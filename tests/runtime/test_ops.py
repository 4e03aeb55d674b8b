"""The op registry: automatic choice per device, forcing, fallback with a log line, clear errors."""
from __future__ import annotations

import logging

import pytest
import torch

from vdrt import ops
from vdrt.errors import ConfigError


@pytest.fixture
def fake_linear():
    calls = []

    def impl(x, w, b=None):
        calls.append(tuple(x.shape))
        return ops.linear_torch(x, w, b) + 1000.0  # recognisable

    ops.register("linear", "fake", impl, supports=lambda x, w, b=None: x.shape[-1] == 8)
    yield calls
    ops._IMPLS["linear"] = [i for i in ops._IMPLS["linear"] if i.name != "fake"]


def test_auto_keeps_torch_for_cpu_tensors(fake_linear):
    x, w = torch.randn(3, 8), torch.randn(4, 8)
    assert torch.equal(ops.linear(x, w), ops.linear_torch(x, w))
    assert fake_linear == []


def test_forced_choice_is_used_and_falls_back_with_a_log_line(fake_linear, caplog):
    x, w = torch.randn(3, 8), torch.randn(4, 8)
    with ops.use(linear="fake"):
        assert torch.allclose(ops.linear(x, w), ops.linear_torch(x, w) + 1000.0)
        with caplog.at_level(logging.WARNING, logger="vdrt.ops"):
            y = ops.linear(torch.randn(3, 6), torch.randn(4, 6))  # supports() says no
        assert y.abs().max() < 1000 and "torch fallback" in caplog.text
    assert ops.get_choice("linear") == "auto"
    assert fake_linear == [(3, 8)]


def test_bad_names_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown op"):
        ops.set_choice("convolution", "torch")
    with pytest.raises(ConfigError, match="unknown implementation 'magic'"):
        ops.set_choice("attention", "magic")


def test_torch_references_are_correct():
    q, k, v = (torch.randn(2, 5, 3, 8, dtype=torch.float64) for _ in range(3))
    s = torch.einsum("blhd,bmhd->bhlm", q, k) / 8**0.5
    want = torch.einsum("bhlm,bmhd->blhd", s.softmax(-1), v)
    torch.testing.assert_close(ops.attention(q, k, v), want)
    qt = torch.randn(2, 4, 6, 3, 8, dtype=torch.float64)  # (B, F, S, H, D): attention over F
    seq = qt.permute(0, 2, 3, 1, 4)  # (B, S, H, F, D)
    st = seq @ seq.transpose(-1, -2) / 8**0.5
    want_t = (st.softmax(-1) @ seq).permute(0, 3, 1, 2, 4)
    torch.testing.assert_close(ops.temporal_attention(qt, qt, qt), want_t)


def test_attention_debug_mode_refuses_nan():
    from vdrt.errors import SamplingError

    q = torch.randn(1, 8, 2, 16)
    bad = q.clone()
    bad[0, 3, 1, 5] = float("nan")
    assert torch.isnan(ops.attention(q, q, bad)).any()  # default: NaN propagates (the loop names the step)
    ops.set_debug(True)
    try:
        with pytest.raises(SamplingError, match="input v .*NaN"):
            ops.attention(q, q, bad)
        assert torch.isfinite(ops.attention(q, q, q)).all()
    finally:
        ops.set_debug(False)


def test_forced_attention_kernel_refuses_inputs_it_cannot_take_on_gpu(monkeypatch):
    """On a GPU, a forced kernel that cannot take the head dim / dtype is refused with the fix;
    on the CPU (no kernel can run) the torch path is used."""
    from vdrt.errors import ConfigError

    q = torch.randn(1, 8, 2, 96)
    with ops.use(attention="vdrt"):
        assert torch.equal(ops.attention(q, q, q), ops.attention_torch(q, q, q))
        monkeypatch.setattr(ops, "_on_gpu", lambda args: True)
        monkeypatch.setattr(ops, "_ensure_kernels_loaded", lambda force=False: None)
        with pytest.raises(ConfigError, match="cannot take q of shape .*96.*--attention auto"):
            ops.attention(q, q, q)
