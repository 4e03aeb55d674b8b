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


def test_kernel_takes_positions_of_reordered_tokens():
    """Tokens in sparse attention's tile order: the kernel with `pos` equals the table path on
    permuted tables, through the registry op too."""
    import vdrt.kernels  # noqa: F401
    from vdrt.kernels import rope as R
    from vdrt.sparse import TileLayout

    grid, heads, d = (3, 4, 6), 2, 64
    lay = TileLayout.for_grid(grid, (2, 2, 4))
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 72, heads * d, generator=g)
    w = torch.randn(heads * d, generator=g)
    cos, sin = WanRope(d, 64)(*grid)
    want = ops.rope_qk_norm_torch(x.double(), w.double(), 1e-6, cos[lay.perm].double(), sin[lay.perm].double(),
                                  heads, grid)
    out = R.launch(x, w, heads, grid, 1e-6, 10000.0, pos=lay.perm)
    assert ((out.double() - want).norm() / want.norm()).item() < 1e-5
    with ops.use(rope_qk_norm="vdrt"):
        via_op = ops.rope_qk_norm(x, w, 1e-6, cos[lay.perm], sin[lay.perm], heads, grid, lay.perm)
    assert torch.equal(via_op, out)
