"""NVRTC compile + disk cache (CPU: NVRTC needs no GPU) and the CUDA kernels' parity (-m gpu)."""
from __future__ import annotations

import logging

import pytest
import torch

from tests.kernels.conftest import assert_close_to_reference, poisoned, randn, requires_cuda
from vdrt.cuda import nvrtc

pytestmark = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC cannot be loaded: pip install cuda-bindings "
                                "nvidia-cuda-nvrtc (the 'cuda' extra)")

BROKEN = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] = undefined_name + 1.0f; }\n'
TINY = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] *= 2.0f; }\n'


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VDRT_CACHE", str(tmp_path))


def test_every_cu_under_csrc_compiles_for_sm_90():
    sources = sorted(p.name for p in nvrtc.csrc_path("").glob("*.cu"))
    assert {"temporal_attention.cu", "quant_fp8.cu"} <= set(sources)
    for name in sources:
        compiled = nvrtc.compile_file(name, arch="sm_90")
        assert compiled.binary[:4] == b"\x7fELF", name  # a cubin


@pytest.mark.parametrize("t,d", [(1, 40), (25, 72), (64, 128)])
def test_temporal_attention_variants_compile(t, d):
    assert nvrtc.compile_file("temporal_attention.cu", [f"-DTA_T={t}", f"-DTA_D={d}"]).binary[:4] == b"\x7fELF"


def test_unsupported_variant_fails_with_the_reason():
    with pytest.raises(nvrtc.NvrtcError, match="TA_D % 8 == 0"):
        nvrtc.compile_file("temporal_attention.cu", ["-DTA_T=16", "-DTA_D=42"])


def test_compute_arch_gives_ptx():
    ptx = nvrtc.compile_source(TINY, arch="compute_90").binary
    assert b".target sm_90" in ptx and b".entry k" in ptx


def test_broken_source_raises_with_the_full_log():
    with pytest.raises(nvrtc.NvrtcError) as info:
        nvrtc.compile_source(BROKEN, "broken.cu")
    assert "undefined_name" in info.value.log and "broken.cu" in info.value.log
    assert "undefined_name" in str(info.value)
    assert not nvrtc.cache_dir().exists() or not any(nvrtc.cache_dir().iterdir())  # nothing cached


def test_cache_hits_without_recompiling_and_a_changed_option_misses(monkeypatch, tmp_path):
    first = nvrtc.compile_source(TINY, options=["-DA=1"])
    assert not first.from_cache and nvrtc.cache_dir() == tmp_path / "nvrtc"
    assert (tmp_path / "nvrtc" / f"{first.key}.cubin").read_bytes() == first.binary

    def no_compile(*a, **k):
        raise AssertionError("recompiled on a cache hit")

    monkeypatch.setattr(nvrtc, "_nvrtc_compile", no_compile)
    second = nvrtc.compile_source(TINY, options=["-DA=1"])
    assert second.from_cache and second.binary == first.binary and second.key == first.key
    monkeypatch.undo()
    monkeypatch.setenv("VDRT_CACHE", str(tmp_path))
    other = nvrtc.compile_source(TINY, options=["-DA=2"])
    assert not other.from_cache and other.key != first.key
    assert nvrtc.compile_source(TINY, options=["-DA=1"], arch="sm_80").key != first.key


def test_cache_key_covers_the_nvrtc_version():
    assert nvrtc.cache_key("x", ["-O3"], "sm_90", (13, 0)) != nvrtc.cache_key("x", ["-O3"], "sm_90", (13, 1))


def test_cache_write_is_atomic(monkeypatch, tmp_path):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(nvrtc.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        nvrtc.compile_source(TINY)
    assert list((tmp_path / "nvrtc").iterdir()) == []  # neither a torn entry nor a tmp file


def test_cuda_impl_is_registered_and_cpu_inputs_fall_back(caplog):
    pytest.importorskip("triton")
    from vdrt import ops
    from vdrt.cuda import temporal_attention as cta

    q, k, v = (randn(1, 5, 2, 2, 40, dtype=torch.bfloat16, device="cpu") for _ in range(3))
    assert "cuda" in ops.available("temporal_attention") and not cta.supports(q, k, v)
    ops._WARNED.discard(("temporal_attention", "cuda"))
    with ops.use(temporal_attention="cuda"), caplog.at_level(logging.WARNING, logger="vdrt.ops"):
        out = ops.temporal_attention(q, k, v)
    assert any("torch fallback" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(out, ops.temporal_attention_torch(q, k, v), rtol=0, atol=0)


# ---------------------------------------------------------------- GPU parity


def _ta_check(q, k, v):
    from vdrt.cuda import temporal_attention as cta
    from vdrt.kernels.temporal_attention import reference

    assert cta.supports(q, k, v)
    out = cta.launch(q, k, v, out=poisoned(q.shape, q.dtype, q.device))
    ref = reference(q.double(), k.double(), v.double())
    return assert_close_to_reference(out, ref, reference(q, k, v), mult=3.0)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("shape", [(1, 16, 4096, 16, 64), (1, 25, 9216, 5, 64), (1, 16, 2048, 16, 72),
                                   (2, 16, 32768, 2, 64), (1, 5, 512, 4, 40), (1, 1, 64, 2, 128),
                                   (1, 64, 256, 4, 128), (1, 33, 128, 2, 128)], ids=str)
def test_gpu_cuda_temporal_attention_matches_float64(shape):
    _ta_check(*(randn(*shape, dtype=torch.bfloat16) for _ in range(3)))


@pytest.mark.gpu
@requires_cuda
def test_gpu_cuda_temporal_attention_fused_qkv_graph_and_registry():
    from vdrt import ops
    from vdrt.cuda import temporal_attention as cta

    qkv = randn(1, 16, 512, 3, 8, 64, dtype=torch.bfloat16)
    q, k, v = qkv.unbind(3)
    _ta_check(q, k, v)
    want = cta.launch(q, k, v)
    with ops.use(temporal_attention="cuda"):
        torch.testing.assert_close(ops.temporal_attention(q, k, v), want, rtol=0, atol=0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = torch.ops.vdrt.cuda_temporal_attention(q, k, v)
    qkv.copy_(randn(*qkv.shape, dtype=qkv.dtype))
    graph.replay()
    torch.testing.assert_close(out, cta.launch(q, k, v), rtol=0, atol=0)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("shape", [(4096, 1536), (3, 77, 5120), (5, 8)])
def test_gpu_quant_fp8_matches_torch_bit_for_bit(shape):
    from vdrt.cuda.quant_fp8 import quant_fp8, reference

    x = randn(*shape, dtype=torch.bfloat16) * 3
    q, s = quant_fp8(x)
    rq, rs = reference(x)
    torch.testing.assert_close(s, rs, rtol=0, atol=0)
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8))
    zero = quant_fp8(torch.zeros(2, 16, dtype=torch.bfloat16, device="cuda"))  # the 1e-12 clamp
    assert torch.equal(zero[0].float(), torch.zeros(2, 16, device="cuda")) and (zero[1] > 0).all()
