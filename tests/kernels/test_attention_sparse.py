"""Block-sparse 3D attention kernel vs a float64 masked reference: CPU through TRITON_INTERPRET=1,
GPU at Wan shapes. Tolerances from PyTorch's own bf16 error on the same inputs (dense SDPA)."""
import logging

import pytest
import torch

_CPU = not torch.cuda.is_available()

pytest.importorskip("triton")

from vdrt import ops, sparse  # noqa: E402
from vdrt.kernels import attention_sparse as S  # noqa: E402
from vdrt.sparse import SparseConfig, TileLayout  # noqa: E402

log = logging.getLogger(__name__)
gpu = pytest.mark.skipif(_CPU, reason="needs a CUDA GPU")


def _rand(*shape, device="cpu", seed=0, dtype=torch.bfloat16):
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(*shape, generator=g, device=device).to(dtype)


def _masked_reference(q, k, v, plan, rows=None):
    """float64 attention with the plan's token mask (per head when the plan has per-head windows),
    for query rows `rows` (a slice; default all): q holds those rows only."""
    out = torch.empty(q.shape, dtype=torch.float64, device=q.device)
    heads = plan.lut.shape[0]
    masks = [sparse.token_mask(plan, h)[rows or slice(None)].to(q.device) for h in range(heads)]
    for h in range(q.shape[2]):
        s = torch.einsum("bld,bmd->blm", q[:, :, h].double(), k[:, :, h].double()) / q.shape[-1] ** 0.5
        s = s.masked_fill(~masks[h if heads > 1 else 0], float("-inf"))
        out[:, :, h] = torch.einsum("blm,bmd->bld", torch.softmax(s, -1), v[:, :, h].double())
    return out


def _rel(out, ref):
    assert torch.isfinite(out).all(), "non-finite values in the kernel output"
    return ((out.double() - ref).norm() / ref.norm()).item()


def _run(q, k, v, plan, var):
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    tables = S.device_tables(plan, q.device)
    return S.sparse_attention_fwd(q, k, v, *tables, plan.layout.block, variant=var, out=out)


CASES = [  # grid, tile, window (or per-head windows)
    ((3, 8, 8), (1, 4, 8), (1, 2, 1)),  # full 32-token tiles in 64-row blocks
    ((5, 6, 7), (2, 4, 4), (2, 1, 1)),  # partial tiles at every far edge
    ((5, 6, 7), (2, 4, 4), ((1, 1, 1), (2, 2, 2))),  # per-head windows
]
VARIANTS = [S.SparseVariant(warps=4, stages=1), S.SparseVariant(warps=4, stages=1, tma=True),
            S.SparseVariant(warps=4, stages=1, lazy=True)]


@pytest.mark.parametrize("case", CASES, ids=["full", "partial", "per-head"])
@pytest.mark.parametrize("var", VARIANTS, ids=lambda v: v.name)
def test_bf16_matches_masked_reference(case, var):
    grid, tile, window = case
    lay = TileLayout.for_grid(grid, tile, block=64)
    plan = lay.plan(window, per_head=2)
    q, k, v = (_rand(2, lay.num_tokens, 2, 64, seed=s) for s in range(3))
    ref = _masked_reference(q, k, v, plan)
    base = _rel(sparse.attention_torch(q, k, v, plan), ref)  # SDPA's own bf16 error with the same mask
    assert _rel(_run(q, k, v, plan, var), ref) <= 2 * base + 1e-4


@pytest.mark.parametrize("var", [S.SparseVariant(eight=True, warps=4, stages=1),
                                 S.SparseVariant(eight=True, pv_fp8=False, warps=4, stages=1, tma=True),
                                 S.SparseVariant(eight=True, qk="fp8", warps=4, stages=1)], ids=lambda v: v.name)
def test_eight_bit_matches_masked_reference(var):
    lay = TileLayout.for_grid((5, 6, 7), (2, 4, 4), block=64)
    plan = lay.plan((2, 1, 1))
    q, k, v = (_rand(1, lay.num_tokens, 2, 64, seed=s + 4) for s in range(3))
    k = k + 1.0  # a shared key offset: smoothing removes it
    ref = _masked_reference(q, k, v, plan)
    rel = _rel(_run(q, k, v, plan, var), ref)
    log.info("8-bit sparse %s: rel err %.4f", var.name, rel)
    assert rel < 0.05


def test_op_and_fake():
    lay = TileLayout.for_grid((3, 8, 8), (1, 4, 8), block=64)
    plan = lay.plan((1, 1, 1))
    q, k, v = (_rand(1, lay.num_tokens, 2, 64, seed=s) for s in range(3))
    tables = S.device_tables(plan, q.device)
    assert torch.equal(torch.ops.vdrt.attention_sparse(q, k, v, *tables, 64), S.sparse_attention_fwd(q, k, v, *tables, 64))
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fo = torch.ops.vdrt.attention_sparse(*(mode.from_tensor(t) for t in (q, k, v, *tables)), 64)
    assert fo.shape == q.shape and fo.dtype == q.dtype


def test_rejects_tokens_that_are_not_the_plan():
    lay = TileLayout.for_grid((3, 8, 8), (1, 4, 8), block=64)
    q = _rand(1, lay.num_tokens - 1, 2, 64)
    with pytest.raises(ValueError, match="tiles"):
        S.sparse_attention_fwd(q, q, q, *S.device_tables(lay.plan((1, 1, 1)), q.device), 64)


def test_registry_runs_torch_path_on_cpu():
    lay = TileLayout.for_grid((3, 8, 8), (1, 4, 8), block=64)
    plan = lay.plan((1, 1, 1))
    q, k, v = (_rand(1, lay.num_tokens, 2, 64, seed=s) for s in range(3))
    assert not S.supports(q, k, v, plan)  # CPU tensors
    with ops.use(attention="vdrt-sparse"):
        assert torch.equal(ops.attention(q, k, v, plan=plan), sparse.attention_torch(q, k, v, plan))
    with ops.use(attention="vdrt-sparse-int8"):  # the 8-bit numerics, emulated
        out = ops.attention(q, k, v, plan=plan)
    ref = _masked_reference(q, k, v, plan)
    kernel = _rel(_run(q, k, v, plan, S.SparseVariant(eight=True, pv_fp8=False, warps=4, stages=1)), ref)
    assert 0.3 * kernel < _rel(out, ref) < 3 * kernel


# ---------------------------------------------------------------- GPU, Wan shapes


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("eight", [False, True], ids=["bf16", "int8"])
def test_gpu_wan_grid(eight):
    """Wan-1.3B 480p x 81f grid (21, 30, 52), 12 heads, d=128, about 25% density."""
    plan = SparseConfig(density=0.25).plan((21, 30, 52), 12)
    q, k, v = (_rand(1, plan.layout.num_tokens, 12, 128, device="cuda", seed=s) for s in range(3))
    out = S.run_plan(q, k, v, plan, eight)
    rows, heads = slice(0, 4096), slice(0, 3)  # a float64 reference of 4096 query rows, 3 heads
    q3, k3, v3 = q[:, :, heads], k[:, :, heads], v[:, :, heads]
    ref = _masked_reference(q3[:, rows], k3, v3, plan, rows)
    base = _rel(sparse.attention_torch(q3, k3, v3, plan)[:, rows], ref)
    rel = _rel(out[:, rows, heads], ref)
    log.info("gpu sparse eight=%s: rel %.4f (torch bf16 %.4f)", eight, rel, base)
    assert rel <= (0.05 if eight else 2 * base + 1e-4)


@pytest.mark.gpu
@gpu
def test_gpu_wan_tiny_sparse_eager_graph_and_compile():
    """wan-tiny on the GPU with sparse 8-bit attention: CUDA-graph replay equals eager bit for bit,
    a graph captured under one attention choice is not replayed under another, and torch.compile
    (the kernel as a triton_op) matches eager."""
    from vdrt.engines.torch import TorchEngine
    from vdrt.models.wan import WanConfig, WanModel

    torch.manual_seed(0)
    model = WanModel(WanConfig.from_name("wan-tiny", num_heads=1)).cuda().to_dtype(torch.bfloat16).eval()
    x = torch.randn(1, 16, 8, 32, 32, device="cuda", dtype=torch.bfloat16)
    t, ctx = torch.tensor([400.0], device="cuda"), torch.randn(1, 7, 64, device="cuda", dtype=torch.bfloat16)
    eng = TorchEngine(model, cuda_graphs=True)
    cfg = SparseConfig(density=0.3)
    with torch.inference_mode():
        dense = model(x, t, ctx)
        with ops.use(attention="vdrt-sparse-int8", sparse=cfg):
            eager = model(x, t, ctx)
            assert torch.equal(eng(x, t, ctx), eager)
        assert torch.equal(eng(x, t, ctx), dense) and eng.num_graphs() == 2
        with ops.use(attention="vdrt-sparse", sparse=cfg):
            want = model(x, t, ctx)
            got = torch.compile(model)(x, t, ctx)
    assert (got.float() - want.float()).abs().max() <= 2e-2 * want.float().abs().max()
    assert (eager.float() - dense.float()).abs().max() > 0  # sparse really ran
