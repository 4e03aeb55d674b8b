"""8-bit (SageAttention2-style) attention: quantizers exact vs torch, the INT8 QK^T path vs its
simulation, the FP8 PV path's error vs float64 (reported), smoothing, layouts, policy, registry."""
import torch

_CPU = not torch.cuda.is_available()  # tests/conftest.py runs Triton's CPU interpreter then

import logging

import pytest

pytest.importorskip("triton")

from vdrt import ops
from vdrt.kernels import attention as dense
from vdrt.kernels import attention_int8 as A8
from vdrt.kernels import attention_quant as AQ


log = logging.getLogger(__name__)
CUDA = not _CPU
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
BM, BN = A8.INTERPRET_BLOCKS


def _rand(*shape, dtype=torch.bfloat16, device="cpu", seed=0, shift=0.0):
    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(*shape, generator=g, device=device) + shift).to(dtype)


def _qkv(b, lq, lk, h, d, dtype=torch.bfloat16, device="cpu", seed=0, k_shift=0.0):
    return (_rand(b, lq, h, d, dtype=dtype, device=device, seed=seed),
            _rand(b, lk, h, d, dtype=dtype, device=device, seed=seed + 1, shift=k_shift),
            _rand(b, lk, h, d, dtype=dtype, device=device, seed=seed + 2))


def _rel(out, ref):
    assert torch.isfinite(out).all(), "non-finite values in the kernel output"
    return ((out.double() - ref).norm() / ref.norm()).item()


# ---------------------------------------------------------------- quantizers


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_quantize_rows_matches_torch(kind):
    x = _rand(2, 45, 3, 64, seed=1, shift=0.5)
    x[:, 7] = 0  # an all-zero token: finite scale, zero codes
    xq, sc = AQ.quantize_rows(x, kind, extra_scale=0.5)
    ref_q, ref_s = AQ.reference_rows(x, kind, 0.5)
    assert xq.shape == x.shape and sc.shape == (2, 3, 45) and torch.isfinite(sc).all() and (sc > 0).all()
    torch.testing.assert_close(sc.double(), ref_s, rtol=1e-6, atol=0)
    got = xq.double() if kind == "int8" else xq.float().double()
    assert (got - ref_q).abs().max() <= (1 if kind == "int8" else 32) and (got != ref_q).float().mean() < 1e-3
    assert (got[:, 7] == 0).all()


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_quantize_blocks_smooths_and_takes_irregular_blocks(kind):
    """Uniform blocks with a short last one, and irregular blocks (3D tiles): one scale per block."""
    x = _rand(2, 45, 3, 64, seed=2, shift=0.5)
    for starts, lens in (AQ.uniform_blocks(45, 16, "cpu"),
                         (torch.tensor([0, 9, 25, 41], dtype=torch.int32), torch.tensor([9, 16, 16, 4], dtype=torch.int32))):
        xq, sc = AQ.quantize_blocks(x, starts, lens, 16, kind)
        ref_q, ref_s = AQ.reference_blocks(x, starts, lens, kind)
        assert sc.shape == (2, 3, starts.numel())
        torch.testing.assert_close(sc.double(), ref_s, rtol=1e-5, atol=0)
        got = xq.double() if kind == "int8" else xq.float().double()
        assert (got - ref_q).abs().max() <= (1 if kind == "int8" else 32) and (got != ref_q).float().mean() < 2e-3


def test_quantize_v_fp8_per_channel_transposed():
    v = _rand(1, 37, 2, 64, seed=2) * 3
    vt, vs = AQ.quantize_v(v, 16)
    assert vt.shape == (1, 2, 64, 48) and vt.dtype == torch.float8_e4m3fn and vs.shape == (1, 2, 64)
    torch.testing.assert_close(vs, v.float().abs().amax(dim=1) / 448, rtol=1e-6, atol=0)
    ref = (v.float() / vs[:, None]).to(torch.float8_e4m3fn)  # (B, L, H, D)
    assert torch.equal(vt[..., :37].float(), ref.permute(0, 2, 3, 1).float())
    assert (vt[..., 37:].float() == 0).all()


def test_quantize_v_tile_padded():
    """Sparse attention's layout: tile t's tokens at columns [t * block, t * block + lens[t]), zeros after."""
    v = _rand(2, 45, 2, 64, seed=12) * 3
    starts, lens = torch.tensor([0, 9, 25, 41], dtype=torch.int32), torch.tensor([9, 16, 16, 4], dtype=torch.int32)
    vt, vs = AQ.quantize_v(v, 16, starts, lens)
    assert vt.shape == (2, 2, 64, 64) and vs.shape == (2, 2, 64)
    ref = (v.float() / vs[:, None]).to(torch.float8_e4m3fn).float().permute(0, 2, 3, 1)  # (B, N, K, L)
    for t, (s0, n) in enumerate(zip(starts.tolist(), lens.tolist())):
        assert torch.equal(vt[..., t * 16 : t * 16 + n].float(), ref[..., s0 : s0 + n])
        assert (vt[..., t * 16 + n : (t + 1) * 16].float() == 0).all()


# ---------------------------------------------------------------- attention


SHAPES = [(1, 80, 80, 2, 64), (2, 45, 77, 2, 64), (1, 37, 16, 1, 128)]
VARIANTS = [A8.Variant8(BM, BN, 4, 1, qk=qk, pv_fp8=pv, tma=tma)
            for qk, pv, tma in [("int8", True, False), ("int8", False, False), ("fp8", True, False),
                                ("int8", True, True), ("fp8", False, True)]]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("var", VARIANTS, ids=lambda v: v.name)
def test_matches_blockwise_simulation_and_reports_error(shape, var):
    """Against the float64 simulation of its own algorithm (codes, online softmax, P and V rounded
    alike) the kernel differs by fp32 order and output rounding only: within a small multiple of
    SDPA's own bf16 error. Against exact attention: the 8-bit level, reported and bounded."""
    b, lq, lk, h, d = shape
    q, k, v = _qkv(b, lq, lk, h, d, seed=3, k_shift=1.0)
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    A8.attention_int8_fwd(q, k, v, variant=var, out=out)
    ref = dense.reference(q, k, v)
    sim = A8.reference_quantized(q, k, v, block_n=BN, pv_fp8=var.pv_fp8, qk=var.qk)
    assert _rel(out, sim) <= 2.5 * _rel(ops.attention_torch(q, k, v), ref)
    rel = _rel(out, ref)
    log.info("8-bit attention %s %s: rel err vs fp64 %.4f", shape, var.name, rel)
    assert rel < (0.05 if var.pv_fp8 or var.qk == "fp8" else 0.02)


def test_lazy_rescaling_stays_accurate():
    """Lazy rescaling (P up to 2**8 * 448 / 256 between rescales) on keys whose scores keep rising."""
    q, k, v = _qkv(1, 45, 77, 2, 64, seed=4)
    k = (k.float() * torch.linspace(0.2, 3.0, 77)[None, :, None, None]).to(k.dtype)
    ref = dense.reference(q, k, v)
    eager = _rel(A8.attention_int8_fwd(q, k, v), ref)
    lazy = _rel(A8.attention_int8_fwd(q, k, v, variant=A8.Variant8(BM, BN, 4, 1, lazy=True)), ref)
    assert lazy < 1.5 * eager + 1e-3, (lazy, eager)


def test_int32_to_float_trick_is_exact_at_the_extremes():
    """|q8 . k8| reaches 128 * 127 * 127 at D=128: the bit trick must stay exact there."""
    q = torch.full((1, 16, 1, 128), 1.0, dtype=torch.bfloat16)
    k = torch.full((1, 16, 1, 128), -1.0, dtype=torch.bfloat16)
    k[:, ::2] = 1.0
    v = _rand(1, 16, 1, 128, seed=9)
    var = A8.Variant8(16, 16, 4, 1, pv_fp8=False)
    q8, qs, k8, ks, vv, vs = A8.quantize_inputs(q, k, v, var)
    assert q8.abs().max() == 127 and k8.abs().max() == 127
    out = A8.launch(q8, qs, k8, ks, vv, vs, torch.empty_like(q), var)
    sim = A8.reference_quantized(q, k, v, block_n=16, pv_fp8=False)
    assert _rel(out, sim) < 1e-2


def test_k_smoothing_removes_a_shared_key_offset():
    """A large per-channel offset shared by all keys leaves softmax unchanged; with smoothing the
    8-bit result stays as accurate as without the offset (an unsmoothed per-block int8 K would
    spend its levels on the offset)."""
    q, k, v = _qkv(1, 48, 64, 2, 64, seed=5)
    offset = 8.0 * torch.sign(_rand(1, 1, 2, 64, seed=6))  # exact in bf16
    ref = dense.reference(q, k, v)
    base = _rel(A8.attention_int8_fwd(q, k, v, pv_fp8=False), ref)
    shifted = _rel(A8.attention_int8_fwd(q, k + offset, v, pv_fp8=False), dense.reference(q, k + offset, v))
    assert shifted < 1.5 * base + 1e-3


def test_reads_fused_qkv_views_without_copies():
    qkv = _rand(2, 40, 3, 2, 64, seed=7)
    q, k, v = qkv.unbind(2)
    out = A8.attention_int8_fwd(q, k, v)
    assert torch.equal(out, A8.attention_int8_fwd(q.contiguous(), k.contiguous(), v.contiguous()))
    assert _rel(out, dense.reference(q, k, v)) < 0.05


def test_custom_op_and_fake():
    q, k, v = _qkv(1, 20, 33, 2, 64, seed=8)
    assert torch.equal(torch.ops.vdrt.attention_int8(q, k, v), A8.attention_int8_fwd(q, k, v))
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fo = torch.ops.vdrt.attention_int8(*(mode.from_tensor(t) for t in (q, k, v)))
    assert fo.shape == q.shape and fo.dtype == q.dtype


def test_rejects_unsupported_inputs():
    q, k, v = _qkv(1, 16, 16, 1, 80)
    with pytest.raises(ValueError, match="D in"):
        A8.attention_int8_fwd(q, k, v)


# ---------------------------------------------------------------- policy and registry


def test_registry_never_picks_int8_automatically():
    q, k, v = _qkv(1, 16, 16, 1, 64)
    assert ops.get_choice("attention") == "auto"
    assert not A8.supports(q, k, v)  # not forced (and not CUDA)
    with ops.use(attention="vdrt-int8"):
        assert "vdrt-int8" in ops.available("attention")
        out = ops.attention(q, k, v)  # CPU: the kernel's numerics emulated in torch, not exact attention
    assert torch.equal(out, A8.emulate(q, k, v))
    assert not torch.equal(out, ops.attention_torch(q, k, v))
    ref = dense.reference(q, k, v)
    assert 0.5 * _rel(A8.attention_int8_fwd(q, k, v), ref) < _rel(out, ref) < 2 * _rel(A8.attention_int8_fwd(q, k, v), ref)


# ---------------------------------------------------------------- GPU, real shapes


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("lk", [32760, 512], ids=["self", "cross"])
@pytest.mark.parametrize("pv_fp8", [True, False], ids=["fp8pv", "bf16pv"])
def test_gpu_wan_shapes(lk, pv_fp8):
    q, k, v = _qkv(1, 32760, lk, 12, 128, device="cuda", seed=21, k_shift=0.5)
    out = torch.full_like(q, float("nan"))
    A8.attention_int8_fwd(q, k, v, pv_fp8=pv_fp8, out=out)
    rel = _rel(out, dense.reference(q, k, v, chunk=1024))
    log.info("gpu int8 attention lk=%d pv_fp8=%s: rel err %.4f", lk, pv_fp8, rel)
    assert rel < (0.05 if pv_fp8 else 0.03)


@pytest.mark.gpu
@gpu
def test_gpu_dispatch_when_forced():
    qkv = _rand(1, 4097, 3, 8, 128, device="cuda", seed=22)
    q, k, v = qkv.unbind(2)
    assert not A8.supports(q, k, v)
    with ops.use(attention="vdrt-int8"):
        assert A8.supports(q, k, v)
        out = ops.attention(q, k, v)
    assert _rel(out, dense.reference(q, k, v, chunk=1024)) < 0.05
