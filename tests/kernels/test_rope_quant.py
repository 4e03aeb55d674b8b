"""Fused QK-RMSNorm + rope + int8 quantisation: codes and scales vs the unfused kernels (rope, then the
quantisers) and vs the float64 reference, on inputs with outliers (a per-channel bias, heavy channels)."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from vdrt.kernels import attention_quant as AQ  # noqa: E402
from vdrt.kernels import rope as R  # noqa: E402
from vdrt.kernels import rope_quant as RQ  # noqa: E402


def outlier_x(b, grid, heads, d, dtype=torch.bfloat16, bias=3.0, seed=None):
    """A q/k linear's output with outliers: N(0, 1) + a per-channel bias (std `bias`) + 4 heavy channels (x6)."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    e = heads * d
    x = torch.randn(b, math.prod(grid), e, generator=g) + bias * torch.randn(e, generator=g)
    x[..., torch.randperm(e, generator=g)[:4]] *= 6.0
    return x.to(dtype)


def _codes_match(got, ref_codes, frac=1e-3):
    """int8 codes equal the reference's; at most `frac` of them one level off (fp32 summation order)."""
    diff = (got.double() - ref_codes).abs()
    assert diff.max() <= 1 and (diff > 0).double().mean() <= frac, (diff.max(), (diff > 0).double().mean())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("d", [64, 128])
def test_q_codes_equal_rope_then_quantize_rows(dtype, d):
    grid, heads = (3, 4, 5), 2
    x, w = outlier_x(2, grid, heads, d, dtype), torch.randn(heads * d).to(dtype)
    codes, scales = RQ.launch(x, w, heads, grid, 16, per_row=True, extra_scale=0.3)
    q8, qs = AQ.quantize_rows(R.launch(x, w, heads, grid), "int8", 0.3)  # the unfused path
    assert codes.dtype == torch.int8 and scales.shape == (2, heads, 60) and torch.isfinite(scales).all()
    _codes_match(codes, q8.double())
    torch.testing.assert_close(scales, qs, rtol=2e-7, atol=0)
    ref_c, ref_s = RQ.reference(x, w, heads, grid, None, None, per_row=True, extra_scale=0.3)
    _codes_match(codes, ref_c)
    torch.testing.assert_close(scales.double(), ref_s, rtol=1e-6, atol=0)


def test_k_codes_on_tiles_in_tile_order_with_a_centre():
    """k in a permuted token order (pos), irregular blocks (3D tiles), a centre: vs the float64 reference."""
    grid, heads, d = (3, 4, 5), 2, 64
    x, w = outlier_x(1, grid, heads, d), torch.randn(heads * d).bfloat16()
    pos = torch.randperm(60).int()
    starts = torch.tensor([0, 9, 25, 41, 57], dtype=torch.int32)
    lens = torch.tensor([9, 16, 16, 16, 3], dtype=torch.int32)
    centre = torch.randn(1, heads, d)
    codes, scales = RQ.launch(x, w, heads, grid, 16, False, starts, lens, centre, pos=pos)
    ref_c, ref_s = RQ.reference(x, w, heads, grid, starts, lens, False, centre=centre, pos=pos)
    assert scales.shape == (1, heads, 5)
    _codes_match(codes, ref_c)
    torch.testing.assert_close(scales.double(), ref_s, rtol=1e-6, atol=0)


def test_k_with_exact_mean_equals_quantize_blocks():
    grid, heads, d = (2, 5, 7), 2, 64
    x, w = outlier_x(2, grid, heads, d), torch.randn(heads * d).bfloat16()
    k = R.launch(x, w, heads, grid)
    centre = RQ.centre_of(x, w, heads, grid, "exact")
    torch.testing.assert_close(centre, k.float().mean(1), rtol=1e-6, atol=1e-6)
    codes, scales = RQ.launch(x, w, heads, grid, 16, False, centre=centre)
    k8, ks = AQ.quantize_blocks(k, *AQ.uniform_blocks(70, 16, "cpu"), 16)
    _codes_match(codes, k8.double())
    torch.testing.assert_close(scales, ks, rtol=1e-6, atol=0)


def test_centre_kinds():
    grid, heads, d = (2, 5, 7), 2, 64
    x, w = outlier_x(1, grid, heads, d), torch.randn(heads * d).bfloat16()
    k = R.launch(x, w, heads, grid).float()
    exact = RQ.centre_of(x, w, heads, grid, "exact")
    assert torch.equal(RQ.centre_of(x, w, heads, grid, "sample", samples=70), exact)  # every token sampled
    idx = RQ.sample_index(70, 8, "cpu")
    assert idx.tolist() == [0, 8, 17, 26, 35, 43, 52, 61]
    torch.testing.assert_close(RQ.centre_of(x, w, heads, grid, "sample", samples=8), k[:, idx].mean(1))
    torch.testing.assert_close(RQ.centre_of(x, w, heads, grid, "first", samples=8), k[:, :8].mean(1))
    assert RQ.centre_of(x, w, heads, grid, "none") is None
    with pytest.raises(ValueError, match="centre must be one of"):
        RQ.centre_of(x, w, heads, grid, "median")


@pytest.mark.parametrize("per_row", [True, False], ids=["q", "k"])
def test_non_finite_rows_give_nan_scales(per_row):
    """NaN or Inf in a token make its scale (q) or its block's scale (k) NaN, never finite codes alone."""
    grid, heads, d = (2, 2, 8), 2, 64
    x, w = outlier_x(1, grid, heads, d), torch.randn(heads * d).bfloat16()
    x[0, 5, 3], x[0, 20, 7] = float("nan"), float("inf")
    centre = None if per_row else torch.randn(1, heads, d)
    _, scales = RQ.launch(x, w, heads, grid, 16, per_row, centre=centre)
    bad = [5, 20] if per_row else [0, 1]
    good = [i for i in range(scales.shape[-1]) if i not in bad]
    assert torch.isnan(scales[..., bad]).all() and torch.isfinite(scales[..., good]).all()
    if not per_row:  # a non-finite centre poisons every block
        _, scales = RQ.launch(x[:, :16], w, heads, (1, 2, 8), 16, False, centre=centre * float("nan"))
        assert torch.isnan(scales).all()


def test_op_and_fake():
    grid, heads, d = (2, 2, 4), 2, 64
    x, w = outlier_x(1, grid, heads, d), torch.randn(heads * d).bfloat16()
    got = torch.ops.vdrt.rope_quant(x, w, None, None, None, None, heads, *grid, 16, True, 0.5, 1e-6, 10000.0)
    want = RQ.launch(x, w, heads, grid, 16, True, extra_scale=0.5)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fc, fs = torch.ops.vdrt.rope_quant(mode.from_tensor(x), mode.from_tensor(w), None, None, None, None, heads,
                                           *grid, 16, False, 1.0, 1e-6, 10000.0)
    assert fc.shape == (1, 16, heads, d) and fc.dtype == torch.int8 and fs.shape == (1, heads, 1)
