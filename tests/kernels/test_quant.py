"""fp8 / int8 quantize and dequantize kernels vs torch references, and the fp8 / int8 linears."""
import torch

_CPU = not torch.cuda.is_available()  # tests/conftest.py runs Triton's CPU interpreter then

import gc

import pytest
import torch.nn.functional as F

pytest.importorskip("triton")

from vdrt import ops
from vdrt.kernels import quant as Q


CUDA = not _CPU
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
KINDS = ["fp8", "int8"]


def _rand(*shape, dtype=torch.bfloat16, device="cpu", seed=0, scale=3.0):
    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(*shape, generator=g, device=device) * scale).to(dtype)


def _assert_codes_close(q, ref, kind):
    """Codes equal the reference's; on the GPU (approximate fp32 division) at most one level off
    for a tiny fraction of elements."""
    a, b = q.float(), ref.float()
    assert torch.isfinite(a).all()
    diff = a != b
    if q.device.type == "cpu":
        assert not diff.any(), f"{int(diff.sum())} codes differ from the reference"
    else:
        assert diff.float().mean() < 1e-3
        step = 1.0 if kind == "int8" else (b.abs() / 8).clamp_min(2.0 ** -9)  # one e4m3 ulp
        assert ((a - b).abs() <= step + 1e-6)[diff].all()


def _roundtrip_bound(x, scale, kind):
    """Per element: int8 rounds to the nearest level (|err| <= scale / 2); e4m3 keeps 3 mantissa
    bits (|err| <= |x| / 16) above 2**-6 * scale and 2**-10 * scale below (subnormals)."""
    if kind == "int8":
        return scale / 2
    return torch.maximum(x.abs() / 16, scale * 2.0 ** -10)


# ---------------------------------------------------------------- quantize / dequantize


@pytest.mark.parametrize("c", [48, 100], ids=["one-pass", "two-pass"])  # the interpreter's BLOCK_C is 64
@pytest.mark.parametrize("kind", KINDS)
def test_per_token_matches_reference_and_roundtrips(kind, c):
    x = _rand(2, 19, c, seed=1)
    x[0, 3] = 0  # an all-zero token
    q, s = Q.quantize_per_token_fwd(x, kind)
    ref_q, ref_s = Q.reference_quantize(x, kind, dim=-1)
    assert q.dtype == Q.KINDS[kind][0] and q.shape == x.shape and s.shape == (2, 19, 1)
    assert torch.isfinite(s).all() and (s > 0).all()
    torch.testing.assert_close(s.double(), x.double().abs().amax(-1, keepdim=True).clamp_min(Q.EPS) / Q.KINDS[kind][1],
                               rtol=1e-6, atol=0)
    _assert_codes_close(q, ref_q, kind)
    dq = Q.dequantize_fwd(q, s, torch.float32)
    assert (dq[0, 3] == 0).all() and torch.isfinite(dq).all()
    err = (dq.double() - x.double()).abs()
    assert (err <= _roundtrip_bound(x.double(), s.double(), kind) * (1 + 1e-5)).all()
    assert err.max() > 0  # a lossy format: an exact roundtrip would mean nothing was quantized


@pytest.mark.parametrize("kind", KINDS)
def test_per_channel_matches_reference_and_roundtrips(kind):
    x = _rand(3, 30, 72, seed=2) * torch.linspace(0.01, 10, 72)  # channels of very different range
    x[..., 5] = 0  # an all-zero channel
    q, s = Q.quantize_per_channel_fwd(x, kind)
    ref_q, ref_s = Q.reference_quantize(x.reshape(-1, 72), kind, dim=0)
    assert s.shape == (1, 72) and torch.isfinite(s).all()
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=0)
    _assert_codes_close(q.reshape(-1, 72), ref_q, kind)
    dq = Q.dequantize_fwd(q, s, torch.float32)
    assert (dq[..., 5] == 0).all()
    err = (dq.double() - x.double()).abs()
    assert (err <= _roundtrip_bound(x.double(), s.double(), kind) * (1 + 1e-5)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_strided_input_and_poisoned_outputs(kind):
    """A non-contiguous view quantizes like its contiguous copy; preallocated outputs are fully written."""
    base = _rand(40, 2, 66, seed=3)
    x = base[:, 1, 1:65]  # (40, 64), row stride 132
    dtype = Q.KINDS[kind][0]
    q = torch.full((40, 64), float("nan")).to(dtype) if kind == "fp8" else torch.full((40, 64), 77, dtype=dtype)
    s = torch.full((40, 1), float("nan"))
    Q.quantize_rows(x, kind, out=(q, s))
    ref_q, ref_s = Q.reference_quantize(x, kind)
    _assert_codes_close(q, ref_q, kind)
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=0)
    out = torch.full((40, 64), float("nan"), dtype=torch.bfloat16)
    Q.dequant_epilogue(q, row_scale=s.reshape(-1), dtype=torch.bfloat16, out=out)
    torch.testing.assert_close(out, Q.reference_dequantize(ref_q, ref_s, torch.bfloat16), rtol=0, atol=0)


def test_epilogue_applies_both_scales_and_bias():
    acc = torch.randint(-2**20, 2**20, (20, 48), dtype=torch.int32)
    sr, sc, bias = torch.rand(20) + 0.1, torch.rand(48) + 0.1, _rand(48, seed=4)
    out = Q.dequant_epilogue(acc, sr, sc, bias, dtype=torch.float32)
    ref = acc.double() * sr.double()[:, None] * sc.double()[None, :] + bias.double()
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)


def test_fake_impls_give_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        x = mode.from_tensor(_rand(4, 6, 32))
        q, s = torch.ops.vdrt.quantize_per_token(x, "fp8")
        qc, sc = torch.ops.vdrt.quantize_per_channel(x, "int8")
        w = mode.from_tensor(torch.zeros(16, 32, dtype=torch.int8))
        y = torch.ops.vdrt.int8_linear(x, w, mode.from_tensor(torch.ones(16, 1)), None)
    assert (q.dtype, q.shape, s.shape) == (torch.float8_e4m3fn, (4, 6, 32), (4, 6, 1))
    assert (qc.dtype, sc.shape) == (torch.int8, (1, 32))
    assert y.shape == (4, 6, 16) and y.dtype == torch.bfloat16


def test_rejects_unknown_kind():
    with pytest.raises(ValueError, match="fp8"):
        Q.quantize_rows(_rand(4, 8), "int4")


# ---------------------------------------------------------------- linears


def _simulated_linear(x, w, b, kind):
    """The quantized linear's math in float64: per-token x codes, per-channel w codes."""
    xq, xs = Q.reference_quantize(x.reshape(-1, x.shape[-1]), kind)
    wq, ws = Q.reference_quantize(w, kind)
    y = (xq.double() @ wq.double().t()) * xs.double() * ws.double().t() + b.double()
    return y.reshape(*x.shape[:-1], w.shape[0])


@pytest.mark.parametrize("m", [5, 40], ids=["m5-padded", "m40"])
def test_int8_linear_on_cpu(m):
    x, w, b = _rand(m, 64, seed=5, scale=1.0), _rand(48, 64, seed=6, scale=0.1), _rand(48, seed=7)
    wq, ws = Q.quantize_linear_weight(w, "int8")
    y = Q.int8_linear_fwd(x, wq, ws, b)
    assert y.shape == (m, 48) and y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    sim = _simulated_linear(x, w, b, "int8")
    torch.testing.assert_close(y.double(), sim, rtol=2 ** -7, atol=1e-5)  # bf16 output rounding
    exact = F.linear(x.double(), w.double(), b.double())
    rel = ((y.double() - exact).norm() / (exact - b.double()).norm()).item()
    assert rel < 0.02


def _scaled_mm_runs(device: str) -> bool:
    """torch._scaled_mm with rowwise scales exists on CUDA sm89+ and in recent CPU builds."""
    a = torch.ones(16, 16, device=device).to(torch.float8_e4m3fn)
    try:
        torch._scaled_mm(a, a.t(), scale_a=torch.ones(16, 1, device=device),
                         scale_b=torch.ones(1, 16, device=device), out_dtype=torch.bfloat16)
    except (RuntimeError, NotImplementedError) as e:
        pytest.skip(f"torch._scaled_mm rowwise unavailable on {device}: {e}")
    return True


def test_fp8_linear_matches_simulation_where_scaled_mm_runs():
    _scaled_mm_runs("cpu")
    x, w, b = _rand(3, 7, 64, seed=8, scale=1.0), _rand(48, 64, seed=9, scale=0.1), _rand(48, seed=10)
    wq, ws = Q.quantize_linear_weight(w, "fp8")
    y = Q.fp8_linear_fwd(x, wq, ws, b, fast_accum=False)
    assert y.shape == (3, 7, 48) and y.dtype == torch.bfloat16
    torch.testing.assert_close(y.double(), _simulated_linear(x, w, b, "fp8"), rtol=2 ** -7, atol=1e-4)


def test_weight_cache_requantizes_on_change_and_forgets_dead_weights():
    Q.WEIGHT_CACHE.clear()
    x, w, b = _rand(20, 32, seed=11, scale=1.0), _rand(16, 32, seed=12, scale=0.1), _rand(16, seed=13)
    y1 = Q.linear_int8(x, w, b)
    qw1 = Q.WEIGHT_CACHE.get(w, "int8")[0]
    assert Q.WEIGHT_CACHE.get(w, "int8")[0] is qw1 and len(Q.WEIGHT_CACHE) == 1  # cached
    torch.testing.assert_close(y1.double(), _simulated_linear(x, w, b, "int8"), rtol=2 ** -7, atol=1e-5)
    with torch.no_grad():
        w.mul_(-1)  # in place: version bump
    y2 = Q.linear_int8(x, w, b)
    assert Q.WEIGHT_CACHE.get(w, "int8")[0] is not qw1
    torch.testing.assert_close(y2.double(), _simulated_linear(x, w, b, "int8"), rtol=2 ** -7, atol=1e-5)
    del w
    gc.collect()
    assert len(Q.WEIGHT_CACHE) == 0


def test_registry_linears_are_opt_in_and_emulated_on_cpu():
    f32 = torch.float32  # the CPU models' dtype
    x, w, b = _rand(2, 20, 32, seed=14, scale=1.0, dtype=f32), _rand(16, 32, seed=15, scale=0.1, dtype=f32), \
        _rand(16, seed=16, dtype=f32)
    assert not Q.supports_fp8(x, w) and not Q.supports_int8(x, w)
    assert torch.equal(ops.linear(x, w, b), F.linear(x, w, b))  # not forced: the exact torch op
    exact = F.linear(x.double(), w.double(), b.double())
    for name, kind, tol in (("vdrt-fp8", "fp8", 0.08), ("vdrt-int8", "int8", 0.02)):
        with ops.use(linear=name):  # forced on the CPU: the kernel's quantization, emulated
            y = ops.linear(x, w, b)
        assert y.shape == (2, 20, 16) and y.dtype == x.dtype
        torch.testing.assert_close(y.double(), _simulated_linear(x, w, b, kind), rtol=1e-5, atol=1e-5)
        rel = ((y.double() - exact).norm() / (exact - b.double()).norm()).item()
        assert 1e-4 < rel < tol  # lossy, and by the 8-bit codes' error only


# ---------------------------------------------------------------- GPU, real shapes


SHAPES_KN = [(1536, 1536), (1536, 8960), (8960, 1536)]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("kind", KINDS)
def test_gpu_quantize_large(kind):
    x = _rand(32760, 1536, device="cuda", seed=20)
    x[7] = 0
    q, s = Q.quantize_per_token_fwd(x, kind)
    ref_q, ref_s = Q.reference_quantize(x, kind)
    torch.testing.assert_close(s, ref_s, rtol=1e-6, atol=0)
    _assert_codes_close(q, ref_q, kind)
    qc, sc = Q.quantize_per_channel_fwd(x, kind)
    torch.testing.assert_close(sc, Q.reference_quantize(x, kind, dim=0)[1], rtol=1e-6, atol=0)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kn", SHAPES_KN, ids=lambda kn: f"{kn[0]}x{kn[1]}")
def test_gpu_linears_at_wan_shapes(kind, kn):
    if kind == "fp8":
        _scaled_mm_runs("cuda")
    k, n = kn
    x, w, b = _rand(32760, k, device="cuda", seed=21, scale=1.0), _rand(n, k, device="cuda", seed=22, scale=0.02), \
        _rand(n, device="cuda", seed=23)
    wq, ws = Q.quantize_linear_weight(w, kind)
    fn = torch.ops.vdrt.fp8_linear if kind == "fp8" else torch.ops.vdrt.int8_linear
    y = fn(x, wq, ws, b)
    sim = _simulated_linear(x, w, b, kind)
    assert torch.isfinite(y).all()
    # vs the float64 simulation of the same codes: only accumulation order (fp8 fast accumulation) and bf16 output
    assert ((y.double() - sim).norm() / (sim - b.double()).norm()).item() < 2e-2
    for m in (5, 16, 17):  # tiny M: padded or fallback paths; every row must be its own row's result
        got = fn(x[:m], wq, ws, b).double()
        # per-row error relative to the row's size, as above: an elementwise atol fails at K=8960, where the
        # fp8 fast-accumulation GEMM is off by up to 0.028 on outputs of std ~1.9 (measured on the H100)
        row_err = (got - sim[:m]).norm(dim=1) / (sim[:m] - b.double()).norm(dim=1)
        assert torch.isfinite(got).all() and (row_err < 2e-2).all(), row_err


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", ["vdrt-fp8", "vdrt-int8"])
def test_gpu_registry_linears(name):
    x, w, b = _rand(4, 300, 1536, device="cuda", seed=24, scale=1.0), _rand(1536, 1536, device="cuda", seed=25,
                                                                          scale=0.02), _rand(1536, device="cuda")
    with ops.use(linear=name):
        assert (Q.supports_fp8 if name == "vdrt-fp8" else Q.supports_int8)(x, w, b)
        y = ops.linear(x, w, b)
    exact = F.linear(x.double(), w.double(), b.double())
    assert ((y.double() - exact).norm() / (exact - b.double()).norm()).item() < 0.06  # e4m3: ~3.7%


def _fp8_codes(m, k, n, seed):
    x, w, b = _rand(m, k, seed=seed, scale=1.0), _rand(n, k, seed=seed + 1, scale=0.1), _rand(n, seed=seed + 2)
    xq, xs = Q.reference_quantize(x, "fp8")
    wq, ws = Q.reference_quantize(w, "fp8")
    return x, w, b, xq, xs.float(), wq, ws.float().reshape(1, n)


def test_scaled_mm_pads_rows_until_cublaslt_accepts_and_remembers(monkeypatch):
    x, w, b, xq, xs, wq, ws = _fp8_codes(5, 64, 48, seed=40)
    seen = []

    def fake_scaled_mm(a, bt, scale_a, scale_b, bias, out_dtype, use_fast_accum):
        seen.append(a.shape[0])
        if a.shape[0] % 64:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling `cublasLtMatmulAlgoGetHeuristic`")
        return ((a.float() * scale_a) @ (bt.float() * scale_b) + bias.float()).to(out_dtype)

    monkeypatch.setattr(torch, "_scaled_mm", fake_scaled_mm)
    monkeypatch.setattr(Q, "_MM_PLAN", {})
    y = Q.scaled_mm_rowwise(xq, xs, wq, ws, b, True)
    assert seen == [5, 16, 64] and Q._MM_PLAN[(5, 64, 48)] == 64 and y.shape == (5, 48)
    torch.testing.assert_close(y.double(), _simulated_linear(x, w, b, "fp8"), rtol=2e-2, atol=2e-2)
    Q.scaled_mm_rowwise(xq, xs, wq, ws, b, True)
    assert seen == [5, 16, 64, 64]  # the second call goes straight to the accepted multiple


def test_scaled_mm_without_any_algorithm_multiplies_the_same_codes_dequantized(monkeypatch, caplog):
    x, w, b, xq, xs, wq, ws = _fp8_codes(17, 64, 48, seed=50)

    def no_algorithm(*a, **k):
        raise RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED")

    monkeypatch.setattr(torch, "_scaled_mm", no_algorithm)
    monkeypatch.setattr(Q, "_MM_PLAN", {})
    with caplog.at_level("WARNING", logger=Q.__name__):
        y = Q.scaled_mm_rowwise(xq, xs, wq, ws, b, True)
        Q.scaled_mm_rowwise(xq, xs, wq, ws, b, True)
    assert caplog.text.count("no rowwise fp8 GEMM for M=17 K=64 N=48") == 1
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), _simulated_linear(x, w, b, "fp8"), rtol=2e-2, atol=2e-2)


def test_scaled_mm_other_errors_are_not_swallowed(monkeypatch):
    *_, xq, xs, wq, ws = _fp8_codes(16, 64, 48, seed=60)

    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(torch, "_scaled_mm", oom)
    monkeypatch.setattr(Q, "_MM_PLAN", {})
    with pytest.raises(RuntimeError, match="out of memory"):
        Q.scaled_mm_rowwise(xq, xs, wq, ws, None, True)


def test_rows_kernel_compiles_for_sm90(tmp_path):
    """Compiled-mode front end in a fresh process (this session's kernels are interpreter objects)."""
    import ttir_helpers

    out = ttir_helpers.front_end_in_fresh_process(tmp_path, "import ttir_helpers; print(ttir_helpers.check_quant_rows())")
    assert out == "6 variants compiled", out


# ---------------------------------------------------------------- producer-fed fp8 (fp8_linear_prequant)


def _heavy(m, k, seed):
    """Activations with a few heavy channels (x30), as adaLN / GELU outputs have."""
    x = _rand(m, k, seed=seed, scale=1.0, dtype=torch.float32)
    x[:, torch.randperm(k, generator=torch.Generator().manual_seed(seed))[:3]] *= 30
    return x


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_prequant_linear_is_the_product_of_the_same_codes(out_dtype):
    """CPU path vs float64: fp32 accumulation (relative 1e-5 of the row) plus the output's own rounding."""
    x, w, b = _heavy(37, 96, seed=70), _rand(40, 96, seed=71, scale=0.1, dtype=torch.float32), _rand(40, seed=72)
    xq, xs = Q.quantize_rows(x, "fp8")  # the Triton kernel (interpreter), as a producer writes them
    wq, ws = Q.quantize_linear_weight(w, "fp8")
    y = torch.ops.vdrt.fp8_linear_prequant(xq, xs, wq, ws.reshape(-1), b, out_dtype)
    assert y.shape == (37, 40) and y.dtype == out_dtype and torch.isfinite(y).all()
    want = (xq.double() * xs.double()) @ (wq.double() * ws.double()).t() + b.double()
    eps = torch.finfo(out_dtype).eps
    row = (xq.double() * xs.double()).abs() @ (wq.double() * ws.double()).abs().t() + b.double().abs()
    assert ((y.double() - want).abs() <= 1e-5 * row + eps * want.abs()).all()


def test_prequant_equals_separate_quantization_on_the_same_codes():
    """Same codes => same result: the emulated separate path and the producer-fed op agree exactly in fp32."""
    x, w, b = _heavy(2 * 21, 64, seed=73).view(2, 21, 64), _rand(48, 64, seed=74, scale=0.1, dtype=torch.float32), \
        _rand(48, seed=75, dtype=torch.float32)
    xq, xs = Q.reference_quantize(x, "fp8")
    qa = ops.QuantizedActivation(xq, xs, torch.float32)
    separate = Q.emulate_linear("fp8")(x, w, b)
    assert torch.equal(Q.emulate_linear("fp8")(qa, w, b), separate)
    for name in ("vdrt-fp8", "vdrt-fp8-separate"):
        with ops.use(linear=name):
            assert torch.equal(ops.linear(qa, w, b), separate)
    exact = F.linear(x.double(), w.double(), b.double())
    rel = ((separate.double() - exact).norm() / (exact - b.double()).norm()).item()
    assert 1e-4 < rel < 0.08  # the e4m3 codes' error (about 3.7% for this data), never zero


def test_quantized_activation_through_other_linears_is_dequantized():
    x, w, b = _heavy(20, 32, seed=76), _rand(16, 32, seed=77, scale=0.1, dtype=torch.float32), \
        _rand(16, seed=78, dtype=torch.float32)
    xq, xs = Q.reference_quantize(x, "fp8")
    qa = ops.QuantizedActivation(xq, xs, torch.float32)
    deq = xq.float() * xs
    assert torch.equal(ops.linear(qa, w, b), F.linear(deq, w, b))  # "torch"/auto: x ~ codes * scale
    with ops.use(linear="vdrt-int8"):
        torch.testing.assert_close(ops.linear(qa, w, b), Q.emulate_linear("int8")(deq, w, b), rtol=0, atol=0)


@pytest.mark.parametrize("case, match", [
    ("codes-bf16", "float8_e4m3fn"),
    ("scale-bf16", "float32"),
    ("scale-shape", "last dim of 1"),
    ("k-mismatch", "must match codes' K=32"),
])
def test_prequant_bad_input_refused_in_one_line(case, match):
    from vdrt.errors import ConfigError

    xq, xs = Q.reference_quantize(_heavy(6, 32, seed=79), "fp8")
    wq, ws = Q.reference_quantize(_rand(16, 32, seed=80, dtype=torch.float32), "fp8")
    args = {"codes-bf16": (xq.to(torch.bfloat16), xs, wq, ws), "scale-bf16": (xq, xs.bfloat16(), wq, ws),
            "scale-shape": (xq, xs.reshape(-1), wq, ws), "k-mismatch": (xq, xs, wq[:, :16], ws)}[case]
    with pytest.raises(ConfigError, match=match) as e:
        torch.ops.vdrt.fp8_linear_prequant(*args[:3], args[3].reshape(-1), None, torch.float32)
    assert "\n" not in str(e.value)


def test_prequant_under_compile_and_export():
    xq, xs = Q.reference_quantize(_heavy(3 * 5, 32, seed=81).view(3, 5, 32), "fp8")
    wq, ws = Q.reference_quantize(_rand(16, 32, seed=82, scale=0.1, dtype=torch.float32), "fp8")
    b = _rand(16, seed=83, dtype=torch.float32)

    class M(torch.nn.Module):
        def forward(self, codes, scale):
            return torch.ops.vdrt.fp8_linear_prequant(codes, scale, wq, ws.reshape(-1), b, torch.float32)

    want = M()(xq, xs)
    assert want.shape == (3, 5, 16)
    torch.testing.assert_close(torch.compile(M(), fullgraph=True, backend="aot_eager")(xq, xs), want, rtol=0, atol=0)
    ep = torch.export.export(M(), (xq, xs))
    assert any("fp8_linear_prequant" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(xq, xs), want, rtol=0, atol=0)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("kn", SHAPES_KN + [(5120, 5120), (5120, 13824), (13824, 5120)], ids=lambda kn: f"{kn[0]}x{kn[1]}")
def test_gpu_prequant_at_wan_shapes(kn):
    _scaled_mm_runs("cuda")
    k, n = kn
    x, w, b = _rand(32760, k, device="cuda", seed=84, scale=1.0), _rand(n, k, device="cuda", seed=85, scale=0.02), \
        _rand(n, device="cuda", seed=86)
    xq, xs = Q.quantize_rows(x, "fp8")
    wq, ws = Q.quantize_linear_weight(w, "fp8")
    y = torch.ops.vdrt.fp8_linear_prequant(xq, xs, wq, ws.reshape(-1), b, torch.bfloat16)
    separate = torch.ops.vdrt.fp8_linear(x, wq, ws, b)  # the same codes, quantized inside
    assert torch.isfinite(y).all() and torch.equal(y, separate)
    sim = _simulated_linear(x, w, b, "fp8")
    assert ((y.double() - sim).norm() / (sim - b.double()).norm()).item() < 2e-2
