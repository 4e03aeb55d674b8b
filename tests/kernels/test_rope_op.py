"""The rope_qk_norm op as the Wan model calls it: the Triton kernel equals the table-based torch path."""
from __future__ import annotations

import pytest
import torch

from vdrt import ops
from vdrt.models.wan_blocks import WanRope


@pytest.mark.parametrize("grid, heads, d", [((2, 3, 4), 2, 64), ((1, 5, 3), 3, 128)])
def test_kernel_matches_table_path(grid, heads, d):
    import vdrt.kernels  # noqa: F401  (registers the kernel)
    from vdrt.kernels import rope as R

    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, grid[0] * grid[1] * grid[2], heads * d, generator=g)
    w = torch.randn(heads * d, generator=g)
    cos, sin = WanRope(d, 64)(*grid)
    want = ops.rope_qk_norm_torch(x.double(), w.double(), 1e-6, cos.double(), sin.double(), heads, grid)
    out = R.launch(x, w, heads, grid, 1e-6, 10000.0)
    err = ((out.double() - want).norm() / want.norm()).item()
    assert err < 1e-5, err
