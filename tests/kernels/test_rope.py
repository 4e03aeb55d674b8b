"""RMSNorm-across-heads + 3-D RoPE kernel vs the float64 reference, and the reference vs diffusers' Wan."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from tests.kernels.conftest import (  # noqa: E402
    assert_close_to_reference,
    poisoned,
    randn,
    requires_cuda,
    strided_like,
)
from vdrt.kernels import rope as R  # noqa: E402


def _check(b, grid, heads, d, dtype, weight=True, strided=False, mult=3.0):
    x = randn(b, math.prod(grid), heads * d, dtype=dtype)
    x = strided_like(x) if strided else x
    w = randn(heads * d) if weight else None
    out = R.launch(x, w, heads, grid, out=poisoned((b, math.prod(grid), heads, d), dtype, x.device))
    ref = R.reference(x.double(), w.double() if weight else None, heads, grid)
    return assert_close_to_reference(out, ref, R.reference(x, w, heads, grid), mult)


@pytest.mark.parametrize("d", [40, 64, 72, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_matches_float64_reference(d, dtype):
    _check(2, (2, 3, 2), 2, d, dtype)


def test_fp16_no_weight_and_strided_rows():
    _check(1, (3, 2, 2), 3, 64, torch.float16, weight=False, strided=True)


def test_band_split_is_wans():
    assert R.band_dims(128) == (44, 42, 42) and R.band_dims(64) == (24, 20, 20) and R.band_dims(40) == (16, 12, 12)


def test_reference_matches_diffusers_wan_rotary_and_rmsnorm():
    tw = pytest.importorskip("diffusers.models.transformers.transformer_wan")
    b, grid, heads, d, eps = 2, (3, 2, 4), 2, 40, 1e-6
    x, w = randn(b, math.prod(grid), heads * d, dtype=torch.float64), randn(heads * d, dtype=torch.float64)
    rot = tw.WanRotaryPosEmbed(attention_head_dim=d, patch_size=(1, 1, 1), max_seq_len=64)
    cos, sin = rot(torch.zeros(b, 1, *grid, dtype=torch.float64))  # (1, L, 1, D) each
    norm = torch.nn.RMSNorm(heads * d, eps=eps, elementwise_affine=True).double()
    norm.weight.data.copy_(w)
    h = norm(x).unflatten(2, (heads, -1))  # WanAttnProcessor: norm_q, unflatten, apply_rotary_emb
    x1, x2 = h.unflatten(-1, (-1, 2)).unbind(-1)
    want = torch.empty_like(h)
    want[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    want[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    # diffusers keeps its cos/sin tables in fp32 (.float()), hence 1e-6 and not 1e-12
    torch.testing.assert_close(R.reference(x, w, heads, grid, eps), want, rtol=1e-5, atol=1e-6)
    wrong = R.reference(x, w, heads, (grid[0], grid[2], grid[1]), eps)  # a transposed grid must not pass
    assert (wrong - want).abs().max() > 1e-2


def test_custom_op_fake_and_supports():
    from torch._subclasses import FakeTensorMode

    x, w = randn(1, 12, 80, dtype=torch.bfloat16), randn(80)
    out = R.rope_qk_norm(x, w, 2, (3, 2, 2))
    torch.testing.assert_close(out, R.launch(x, w, 2, (3, 2, 2)), rtol=0, atol=0)
    with FakeTensorMode() as mode:
        fake = torch.ops.vdrt.rope_qk_norm(mode.from_tensor(x), mode.from_tensor(w), 2, 3, 2, 2, 1e-6, 1e4)
    assert fake.shape == (1, 12, 2, 40) and fake.dtype == torch.bfloat16
    assert not R.supports(x, w, 2, (3, 2, 3))  # grid does not match L
    assert not R.supports(x, w, 3, (3, 2, 2))  # 80 channels do not split into 3 heads
    assert not R.supports(x.double(), w, 2, (3, 2, 2))
    torch.testing.assert_close(R.rope_qk_norm(x.double(), w, 2, (3, 2, 2)), R.reference(x.double(), w, 2, (3, 2, 2)))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("heads,d,grid", [(12, 128, (21, 30, 52)), (40, 128, (2, 30, 52)), (16, 72, (16, 16, 16))])
def test_gpu_wan_shapes(heads, d, grid):
    _check(1, grid, heads, d, torch.bfloat16)


def test_the_registered_kernel_is_not_taken_without_a_norm_weight():
    """The op's weight=None means qk_norm off (no norm), while the kernel always normalises: the registry must
    never pick the kernel then (it would normalise q/k of a model that does not)."""
    from vdrt import ops

    impl = next(i for i in ops._IMPLS["rope_qk_norm"] if i.name == "vdrt")
    x, w = randn(1, 12, 80, dtype=torch.bfloat16), randn(80)
    cos, sin = torch.ones(12, 20), torch.zeros(12, 20)
    assert impl.supports(x, w, 1e-6, cos, sin, 2, (3, 2, 2))
    assert not impl.supports(x, None, 1e-6, cos, sin, 2, (3, 2, 2))
