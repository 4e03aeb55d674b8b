"""Sliding-tile sparse attention: tile layouts, plans, the torch path, and the Wan model's tile order."""
import logging

import pytest
import torch

from vdrt import ops, sparse
from vdrt.errors import ConfigError
from vdrt.sparse import SparseConfig, TileLayout


def _rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("grid,tile", [((5, 6, 7), (2, 4, 4)), ((3, 8, 8), (1, 8, 8)), ((21, 30, 52), None)])
def test_layout_is_a_permutation_into_compact_tiles(grid, tile):
    lay = TileLayout.for_grid(grid, tile)
    n = lay.num_tokens
    assert sorted(lay.perm.tolist()) == list(range(n))
    assert torch.equal(lay.perm[lay.inv], torch.arange(n))
    assert int(lay.lens.sum()) == n and (lay.lens <= lay.block).all() and (lay.lens > 0).all()
    assert torch.equal(lay.starts[1:], torch.cumsum(lay.lens, 0)[:-1].int())
    # every tile's tokens lie inside its 3D box of the grid
    f, h, w = grid
    coords = torch.stack([lay.perm // (h * w), (lay.perm // w) % h, lay.perm % w], -1)
    for i, (s, m) in enumerate(zip(lay.starts.tolist(), lay.lens.tolist())):
        c = coords[s : s + m]
        assert ((c.max(0).values - c.min(0).values) < torch.tensor(lay.tile)).all(), i


def test_chosen_tile_for_wan_fills_blocks():
    lay = TileLayout.for_grid((21, 30, 52))  # Wan-1.3B 480p x 81 frames
    blocks = lay.tiles[0] * lay.tiles[1] * lay.tiles[2]
    assert blocks * lay.block / lay.num_tokens < 1.1  # under 10% of the kernel's work is padding


def test_plan_visits_the_sta_window_and_full_tiles_first():
    lay = TileLayout.for_grid((6, 8, 8), (2, 4, 4))  # 3 x 2 x 2 tiles, all full
    plan = lay.plan((1, 1, 1))
    assert plan.counts[0, :, 1].tolist() == [1] * 12 and torch.equal(plan.lut[0, :, 0], torch.arange(12).int())
    plan = lay.plan((2, 2, 2))
    assert (plan.counts[0, :, 1] == 8).all()  # STA: windows shifted inward keep their size
    mask = plan.tile_mask()
    assert mask.diagonal().all() and abs(plan.density - 8 / 12) < 1e-9
    part = TileLayout.for_grid((5, 6, 7), (2, 4, 4)).plan((2, 2, 2))
    lens = part.layout.lens
    for t in range(part.lut.shape[1]):
        nf, na = part.counts[0, t].tolist()
        ids = part.lut[0, t, :na].long()
        assert (lens[ids[:nf]] == part.layout.block).all() and (lens[ids[nf:]] < part.layout.block).all()


def test_window_as_large_as_the_grid_is_dense_and_said_so(caplog):
    lay = TileLayout.for_grid((4, 8, 8), (2, 4, 4))
    assert lay.plan((2, 2, 2)).dense and not lay.plan((1, 2, 2)).dense
    with caplog.at_level(logging.WARNING, logger="vdrt.sparse"):
        SparseConfig(window=(9, 9, 9)).plan((4, 8, 8), 2)
    assert "dense" in caplog.text


def test_window_for_density():
    lay = TileLayout.for_grid((21, 30, 52))
    for d in (0.25, 0.5):
        assert abs(lay.plan(sparse.window_for_density(lay, d)).density - d) < 0.05


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="density"):
        SparseConfig(density=0)
    with pytest.raises(ConfigError, match="window"):
        SparseConfig(window=(0, 1, 1))
    with pytest.raises(ConfigError, match="tile"):
        TileLayout.for_grid((4, 8, 8), (4, 8, 8))  # 256 tokens: larger than a block
    with pytest.raises(ConfigError, match="grid"):
        TileLayout.for_grid((0, 8, 8))
    with pytest.raises(ConfigError, match="per-head"):
        TileLayout.for_grid((4, 8, 8), (2, 4, 4)).plan(((1, 1, 1), (2, 2, 2)), per_head=3)
    lay = TileLayout.for_grid((4, 8, 8), (2, 4, 4))
    q = _rand(1, 100, 2, 16)
    with pytest.raises(ConfigError, match="tile order"):
        sparse.attention_torch(q, q, q, lay.plan((1, 1, 1)))


def _masked_reference(q, k, v, plan, head_windows=False):
    """float64 attention in tile order with the plan's token mask, head by head."""
    out = torch.empty(q.shape, dtype=torch.float64)
    for h in range(q.shape[2]):
        m = sparse.token_mask(plan, h if head_windows else 0)
        s = torch.einsum("bld,bmd->blm", q[:, :, h].double(), k[:, :, h].double()) / q.shape[-1] ** 0.5
        out[:, :, h] = torch.einsum("blm,bmd->bld", torch.softmax(s.masked_fill(~m, float("-inf")), -1), v[:, :, h].double())
    return out


def test_torch_path_matches_masked_reference_with_per_head_windows():
    lay = TileLayout.for_grid((5, 6, 7), (2, 4, 4))
    plan = lay.plan(((1, 1, 1), (2, 2, 1)), per_head=2)
    q, k, v = (_rand(2, lay.num_tokens, 2, 16, seed=s) for s in range(3))
    out = sparse.attention_torch(q, k, v, plan, chunk=50)
    ref = _masked_reference(q, k, v, plan, head_windows=True)
    assert (out.double() - ref).abs().max() < 1e-5
    dense = ops.attention_torch(q, k, v)
    assert (out - dense).abs().max() > 1e-2  # the window really drops keys


def test_ops_sparse_choice_uses_the_plan_only_for_self_attention():
    lay = TileLayout.for_grid((5, 6, 7), (2, 4, 4))
    plan = lay.plan((1, 1, 1))
    q, k, v = (_rand(1, lay.num_tokens, 2, 16, seed=s) for s in range(3))
    with ops.use(attention="vdrt-sparse"):
        assert torch.equal(ops.attention(q, k, v, plan=plan), sparse.attention_torch(q, k, v, plan))
        assert torch.equal(ops.attention(q, k[:, :9], v[:, :9]), ops.attention_torch(q, k[:, :9], v[:, :9]))
        assert ops.sparse_config() == SparseConfig()
    assert ops.sparse_config() is None
    assert torch.equal(ops.attention(q, k, v, plan=plan), ops.attention_torch(q, k, v))  # dense choice: all keys


def _wan_tiny():
    from vdrt.models.wan import WanConfig, WanModel

    torch.manual_seed(0)
    return WanModel(WanConfig.from_name("wan-tiny")).eval()


def test_wan_tile_order_with_a_dense_window_changes_nothing():
    """Tokens permuted into tiles and back, with a window spanning the grid on each axis but split
    into several tiles: only the order of floating-point sums changes."""
    model = _wan_tiny()
    x, t, ctx = _rand(1, 16, 4, 16, 16, seed=1), torch.tensor([500.0]), _rand(1, 7, 64, seed=2)
    base = model(x, t, ctx)
    cfg = SparseConfig(window=(4, 2, 2), tile=(2, 4, 4))  # grid (4, 8, 8): 2 x 2 x 2 tiles, all visited
    with ops.use(attention="vdrt-sparse", sparse=cfg):
        assert cfg.plan((4, 8, 8), 2).dense
        same = model(x, t, ctx)
    assert torch.equal(same, base)  # a dense plan keeps raster order


def test_wan_sparse_matches_a_masked_raster_model(monkeypatch):
    """The sparse model equals the dense model whose self-attention masks the same token pairs in
    raster order: the permutation, the rope positions and the un-permutation are all right."""
    model = _wan_tiny()
    x, t, ctx = _rand(1, 16, 5, 12, 14, seed=3), torch.tensor([300.0]), _rand(1, 7, 64, seed=4)
    cfg = SparseConfig(window=(1, 2, 1), tile=(2, 2, 4))
    grid = (5, 6, 7)
    plan = cfg.plan(grid, 2)
    assert not plan.dense
    with ops.use(attention="vdrt-sparse", sparse=cfg):
        out = model(x, t, ctx)
    lay = plan.layout
    mask_raster = sparse.token_mask(plan)[lay.inv][:, lay.inv]  # raster x raster
    calls = []

    def masked(q, k, v, plan=None):
        if k.shape[1] != lay.num_tokens:  # cross-attention stays dense
            return ops.attention_torch(q, k, v)
        calls.append(1)
        qt, kt, vt = (z.transpose(1, 2) for z in (q, k, v))
        return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask_raster).transpose(1, 2)

    monkeypatch.setattr(ops, "attention", masked)
    ref = model(x, t, ctx)
    assert calls and (out - ref).abs().max() < 1e-4 * ref.abs().max()
    with ops.use(attention="torch"):
        monkeypatch.undo()
        dense = model(x, t, ctx)
    assert (out - dense).abs().max() > 1e-3  # sparse really differs from dense
