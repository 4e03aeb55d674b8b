"""Sliding-tile sparse attention for 3D video grids: the tile layout, block-sparse plans, a torch path.

The video tokens of one clip form a (f, h, w) patch grid, L = f*h*w, in raster (frame, row,
column) order. For sparse attention they are reordered ONCE per forward into 3D tiles of
(tf, th, tw) tokens: tiles in raster order of their tile coordinates, and inside a tile the
grid positions it covers in raster order. Tiles at the grid's far edges are partial (the
grid need not divide); they are stored compactly (no padding tokens anywhere), so tile i
holds rows [starts[i], starts[i] + lens[i]) and lens[i] <= tf*th*tw = `block`.

Every token-wise layer (linears, norms, FFN, cross-attention) is indifferent to the order, and
dense attention over all keys is too, so the model permutes its hidden state after the patch
embedding (`x[:, layout.perm]`) and back before the head (`x[:, layout.inv]`); rope positions
travel with the tokens.

A plan says which key tiles each query tile visits: the tiles inside a window of (wf, wh, ww)
tiles around it (Sliding Tile Attention). As in STA the window is shifted inward at the grid's
borders, so every query tile visits the same number of tiles, and a window as large as the grid
on an axis covers that whole axis. Windows may differ per head. Text cross-attention stays dense.

    layout = TileLayout.for_grid((21, 30, 52))                 # Wan-1.3B 480p x 81 frames
    plan = layout.plan((5, 3, 5))                              # about 25% of the key tiles
    out = attention_torch(q, k, v, plan)                       # (B, L, N, K) in tile order

Plans hold int32 tables for the kernel (`vdrt.kernels.attention_sparse`):
  lut (Hp, T, V)    key tile ids per query tile (Hp = 1, or H with per-head windows), full tiles
                    first, then partial ones (the kernel masks only those)
  counts (Hp, T, 2) number of full key tiles, number of all key tiles
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

Grid = tuple[int, int, int]
BLOCKS = (64, 128)  # tokens per tile: the kernel's tile (BLOCK_M = BLOCK_N)


@dataclass(frozen=True)
class TileLayout:
    """The token order of one (f, h, w) grid cut into (tf, th, tw) tiles."""

    grid: Grid
    tile: Grid
    perm: torch.Tensor = field(repr=False, compare=False)  # (L,) tile-order position -> raster index
    inv: torch.Tensor = field(repr=False, compare=False)  # (L,) raster index -> tile-order position
    starts: torch.Tensor = field(repr=False, compare=False)  # (T,) int32 first row of each tile
    lens: torch.Tensor = field(repr=False, compare=False)  # (T,) int32 rows of each tile

    @classmethod
    def for_grid(cls, grid: Grid, tile: Grid | None = None, block: int = 128) -> "TileLayout":
        """The layout of `grid`; `tile` defaults to `choose_tile(grid, block)`."""
        grid = _check_grid(grid)
        return _layout(grid, tuple(tile) if tile is not None else choose_tile(grid, block))

    @property
    def block(self) -> int:
        """The kernel's tile rows: the smallest of BLOCKS that holds a tile."""
        return next(b for b in BLOCKS if b >= math.prod(self.tile))

    @property
    def tiles(self) -> Grid:
        """Tiles per axis."""
        return tuple(-(-n // t) for n, t in zip(self.grid, self.tile))

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    def plan(self, window, per_head: int | None = None) -> "Plan":
        """The block-sparse plan of `window`: (wf, wh, ww) tiles, or one such triple per head."""
        return _plan(self, _windows(window, per_head))

    def to(self, device) -> "TileLayout":
        return TileLayout(self.grid, self.tile, *(t.to(device) for t in (self.perm, self.inv, self.starts, self.lens)))


@dataclass(frozen=True)
class Plan:
    """Which key tiles each query tile visits (see the module docstring)."""

    layout: TileLayout
    windows: tuple[Grid, ...]  # one per plan head
    lut: torch.Tensor = field(repr=False, compare=False)  # (Hp, T, V) int32
    counts: torch.Tensor = field(repr=False, compare=False)  # (Hp, T, 2) int32: full, all

    @property
    def density(self) -> float:
        """Fraction of the (query token, key token) pairs the plan computes (mean over heads)."""
        lens = self.layout.lens.double().cpu()
        pairs = [lens @ self.tile_mask(h).double() @ lens for h in range(self.lut.shape[0])]
        return float(sum(pairs) / len(pairs) / self.layout.num_tokens ** 2)

    @property
    def dense(self) -> bool:
        return all(all(w >= n for w, n in zip(win, self.layout.tiles)) for win in self.windows)

    def to(self, device) -> "Plan":
        return Plan(self.layout.to(device), self.windows, self.lut.to(device), self.counts.to(device))

    def tile_mask(self, head: int = 0) -> torch.Tensor:
        """(T, T) bool: query tile x key tile visited."""
        h = head if self.lut.shape[0] > 1 else 0
        lut, valid = self.lut[h].long().cpu(), _valid(self, h).cpu()
        t = lut.shape[0]
        rows = torch.arange(t)[:, None].expand_as(lut)
        m = torch.zeros(t, t, dtype=torch.bool)
        m[rows[valid], lut[valid]] = True
        return m


def _valid(plan: Plan, h: int) -> torch.Tensor:
    """(T, V) bool: which lut entries are used."""
    v = torch.arange(plan.lut.shape[2], device=plan.lut.device)
    return v[None, :] < plan.counts[h, :, 1:2]


@dataclass(frozen=True)
class SparseConfig:
    """What a user sets for sparse attention: a window in tiles (or one per head), or a density the
    window is chosen for; the tile shape (default: chosen per grid) and the kernel's tile rows.

        with vdrt.ops.use(attention="vdrt-sparse", sparse=SparseConfig(density=0.25)): ...
    """

    density: float = 0.25
    window: tuple | None = None  # (wf, wh, ww) tiles, or ((wf, wh, ww), ...) one per head
    tile: Grid | None = None
    block: int = 64  # 64-token tiles measured faster than 128 on the H200 (4.76 vs 4.94 ms, Wan-1.3B, 25%)

    def __post_init__(self):
        if not isinstance(self.density, (int, float)) or not 0 < self.density <= 1:
            raise ConfigError(f"sparse attention density must be in (0, 1], got {self.density!r}")
        if self.window is not None:
            _windows(self.window, None)
        if self.block not in BLOCKS:
            raise ConfigError(f"sparse attention block must be one of {BLOCKS}, got {self.block}")

    def plan(self, grid: Grid, heads: int) -> Plan:
        """The plan for a (f, h, w) token grid and `heads` attention heads (cached; built outside any
        torch tracing, so a plan first asked for while torch.export traces is real host data)."""
        with eager():
            return _config_plan(self, _check_grid(grid), heads)


@lru_cache(maxsize=64)
def _config_plan(config: SparseConfig, grid: Grid, heads: int) -> Plan:
    layout = TileLayout.for_grid(grid, config.tile, config.block)
    window = config.window if config.window is not None else window_for_density(layout, config.density)
    plan = layout.plan(window, per_head=heads)
    big = [w for w in plan.windows if any(a > n for a, n in zip(w, layout.tiles))]
    if plan.dense:
        log.warning("sparse attention: window %s covers the whole %s tile grid of %s: running dense attention",
                    window, layout.tiles, grid)
    elif big:
        log.warning("sparse attention: window %s is larger than the %s tile grid on some axis: those axes are "
                    "dense", big[0], layout.tiles)
    log.info("sparse attention plan: grid %s, tile %s, %s tiles, window %s, density %.3f", grid, layout.tile,
             layout.tiles, window, plan.density)
    return plan


# ---------------------------------------------------------------- choosing tiles and windows


def choose_tile(grid: Grid, block: int = 128) -> Grid:
    """The (tf, th, tw) tile of at most `block` tokens (and more than half of it) that costs the
    kernel the least: every tile runs as a whole block, so the cost is tiles * block / L, times
    a small penalty for elongated tiles (windows stay isotropic)."""
    if block not in BLOCKS:
        raise ConfigError(f"sparse attention tiles hold at most {BLOCKS} tokens; got {block}")
    best = None
    for tile in product(*(range(1, min(n, block) + 1) for n in grid)):
        vol = math.prod(tile)
        if not block // 2 < vol <= block:
            continue
        tiles = math.prod(-(-n // t) for n, t in zip(grid, tile))
        aspect = max(tile) / min(tile)
        cost = tiles * block / math.prod(grid) * (1 + 0.05 * (aspect - 1))
        if best is None or cost < best[0]:
            best = (cost, tile)
    if best is None:  # the whole grid fits in half a block: one tile
        return grid
    return best[1]


def window_for_density(layout: TileLayout, density: float) -> Grid:
    """The odd (wf, wh, ww) window whose tile fraction is closest to `density` (0 < density <= 1),
    growing the axes in proportion to their tile counts."""
    if not 0 < density <= 1:
        raise ConfigError(f"sparse attention density must be in (0, 1], got {density}")
    tiles = layout.tiles
    best = None
    for win in product(*(range(1, n + 1) for n in tiles)):
        frac = math.prod(win) / math.prod(tiles)
        shape = max(w / n for w, n in zip(win, tiles)) - min(w / n for w, n in zip(win, tiles))
        key = (abs(frac - density), shape)
        if best is None or key < best[0]:
            best = (key, win)
    return best[1]


def _check_grid(grid) -> Grid:
    grid = tuple(int(n) for n in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise ConfigError(f"sparse attention needs a 3D grid of positive sizes (f, h, w); got {grid}")
    return grid


def _windows(window, per_head: int | None) -> tuple[Grid, ...]:
    wins = [tuple(window)] if isinstance(window[0], int) else [tuple(w) for w in window]
    for w in wins:
        if len(w) != 3 or min(w) < 1 or not all(isinstance(n, int) for n in w):
            raise ConfigError(f"a sparse window is 3 positive ints (tiles along f, h, w); got {w}")
    if len(wins) > 1 and per_head is not None and len(wins) != per_head:
        raise ConfigError(f"{len(wins)} per-head windows for {per_head} heads")
    return tuple(wins)


# ---------------------------------------------------------------- building layouts and plans


@lru_cache(maxsize=32)
def _layout(grid: Grid, tile: Grid) -> TileLayout:
    f, h, w = grid
    if len(tile) != 3 or min(tile) < 1 or math.prod(tile) > max(BLOCKS):
        raise ConfigError(f"a sparse tile is (tf, th, tw) of at most {max(BLOCKS)} tokens; got {tile}")
    pos = torch.arange(f * h * w).view(f, h, w)
    tiles, starts, lens, n = [], [], [], 0
    for a, b, c in product(*(range(0, s, t) for s, t in zip(grid, tile))):
        chunk = pos[a : a + tile[0], b : b + tile[1], c : c + tile[2]].reshape(-1)
        tiles.append(chunk)
        starts.append(n)
        lens.append(chunk.numel())
        n += chunk.numel()
    perm = torch.cat(tiles)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    i32 = lambda x: torch.tensor(x, dtype=torch.int32)  # noqa: E731
    return TileLayout(grid, tile, perm, inv, i32(starts), i32(lens))


def _plan(layout: TileLayout, windows: tuple[Grid, ...]) -> Plan:
    coords = torch.tensor(list(product(*(range(n) for n in layout.tiles))))  # (T, 3) tile coordinates
    full = (layout.lens == layout.block).cpu()
    luts, counts = [], []
    for win in windows:
        lo = _window_start(coords, win, layout.tiles)  # (T, 3)
        inside = ((coords[None] >= lo[:, None]) & (coords[None] < lo[:, None] + torch.tensor(win))).all(-1)
        rows = [torch.cat([torch.nonzero(r & full).flatten(), torch.nonzero(r & ~full).flatten()]) for r in inside]
        counts.append(torch.tensor([[int((r & full).sum()), int(r.sum())] for r in inside]))
        luts.append(rows)
    width = max(len(r) for rows in luts for r in rows)
    lut = torch.zeros(len(windows), len(coords), width, dtype=torch.int32)
    for h, rows in enumerate(luts):
        for t, r in enumerate(rows):
            lut[h, t, : len(r)] = r.to(torch.int32)
    return Plan(layout, windows, lut, torch.stack(counts).to(torch.int32))


def _window_start(coords: torch.Tensor, win: Grid, tiles: Grid) -> torch.Tensor:
    """STA's window placement: centred on the query tile, shifted inward at the borders."""
    w = torch.tensor(win)
    n = torch.tensor(tiles)
    return torch.minimum((coords - w // 2).clamp(min=0), (n - w).clamp(min=0))


def device_index(layout: TileLayout, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm, inv) of `layout` as int64 tensors on `device`, made once per layout and device (real
    tensors even while torch traces: a traced graph holds them as constants)."""
    with eager():
        return _device_index(layout, torch.device(device))


@lru_cache(maxsize=64)
def _device_index(layout: TileLayout, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return layout.perm.to(device), layout.inv.to(device)


@contextlib.contextmanager
def eager():
    """Host-side plan data is made outside torch's tracing modes (fake tensors, export's proxies):
    otherwise a cached plan would hold traced values, and its data-dependent sums could not be read."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

    with unset_fake_temporarily(), disable_proxy_modes_tracing():
        yield


# ---------------------------------------------------------------- the torch path


def token_mask(plan: Plan, head: int = 0, rows: slice | None = None) -> torch.Tensor:
    """(L, L) bool in tile order: query token x key token allowed (query `rows` only, if given)."""
    with eager():
        tile_of = torch.repeat_interleave(torch.arange(plan.layout.lens.numel()), plan.layout.lens.cpu().long())
        return plan.tile_mask(head)[tile_of[rows or slice(None)]][:, tile_of]


def _masks(plan: Plan, device) -> list[torch.Tensor]:
    """The plan's token masks on `device` (one per window set), real tensors even while torch traces."""
    with eager():
        return _device_masks(plan, torch.device(device))


@lru_cache(maxsize=16)
def _device_masks(plan: Plan, device: torch.device) -> list[torch.Tensor]:
    return [token_mask(plan, h).to(device) for h in range(plan.lut.shape[0])]


def attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, chunk: int = 4096) -> torch.Tensor:
    """Block-sparse attention through SDPA with a boolean mask, query rows in chunks:
    (B, L, N, K) x3 in tile order -> (B, L, N, K)."""
    import torch.nn.functional as F

    check_inputs(q, k, v, plan)
    heads = plan.lut.shape[0]
    out = torch.empty_like(q)
    masks = _masks(plan, q.device)
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, L, D)
    for s in range(0, q.shape[1], chunk):
        m = torch.stack(masks)[:, s : s + chunk] if heads > 1 else masks[0][s : s + chunk]
        o = F.scaled_dot_product_attention(qt[:, :, s : s + chunk], kt, vt, attn_mask=m)
        out[:, s : s + chunk] = o.transpose(1, 2)
    return out


def check_inputs(q, k, v, plan: Plan) -> None:
    n = plan.layout.num_tokens
    if q.dim() != 4 or q.shape != k.shape or k.shape != v.shape or q.shape[1] != n:
        raise ConfigError(f"sparse attention takes q, k, v of one shape (B, {n}, N, K) (the grid "
                          f"{plan.layout.grid} in tile order); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if plan.lut.shape[0] not in (1, q.shape[2]):
        raise ConfigError(f"the plan has {plan.lut.shape[0]} per-head windows; q has {q.shape[2]} heads")
