"""GELU (tanh) + per-token fp8 quantize kernel vs the float64 reference (CPU interpreter; real shapes under -m gpu).

Tolerance, from e4m3's own rounding: codes keep 3 mantissa bits, so round-to-nearest puts q * s within
|g| / 16 of g (half an ulp, 2**-4 relative) for normal codes and within s * 2**-10 for subnormal ones
(|g| / s < 2**-6); plus 1e-5 |g| for the kernel's fp32 GELU. The scale is amax / 448 of the float64
GELU, to fp32's 1e-5. Outputs are NaN-poisoned first; a non-finite output fails every check.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from tests.kernels.conftest import poisoned, randn, requires_cuda  # noqa: E402
from vdrt.errors import ConfigError  # noqa: E402
from vdrt.kernels import gelu_quant as G  # noqa: E402


def _h(m, c, dtype=torch.bfloat16, device="cpu"):
    """FFN-in outputs: normal, with a few heavy channels (outliers x30), as real activations have."""
    h = randn(m, c, device=device) * 2
    heavy = torch.randperm(c)[:3]
    h[:, heavy] *= 30
    return h.to(dtype)


def _bound(g64, s):
    return torch.maximum(g64.abs() / 16, s.double() * 2.0 ** -10) + 1e-5 * g64.abs()


def _check(h, codes, scale):
    """codes * scale vs the float64 GELU, within e4m3's rounding; scale vs float64 amax / 448."""
    g64 = torch.nn.functional.gelu(h.double(), approximate="tanh")
    want_s = g64.abs().amax(-1, keepdim=True).clamp_min(G.EPS) / G.FP8_MAX
    assert codes.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32
    assert torch.isfinite(scale).all() and torch.isfinite(codes.float()).all(), "unwritten (NaN) outputs"
    torch.testing.assert_close(scale.double(), want_s, rtol=1e-5, atol=0)
    err = (codes.double() * scale.double() - g64).abs()
    bound = _bound(g64, scale)
    assert (err <= bound).all(), f"max excess {(err - bound).max().item():.3g}"
    assert err.max() > 0  # lossy: an exact result would mean nothing was quantized
    return err


@pytest.mark.parametrize("c", [48, 100], ids=["one-pass", "two-pass"])  # the interpreter's BLOCK_C is 64
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_matches_float64_reference(c, dtype):
    h = _h(19, c, dtype)
    h[4] = 0  # an all-zero token: zero codes, a finite scale
    out = (poisoned((19, c), torch.float8_e4m3fn, "cpu"), poisoned((19, 1), torch.float32, "cpu"))
    codes, scale = G.launch(h, out=out)
    assert codes.data_ptr() == out[0].data_ptr()
    _check(h, codes, scale)
    assert (codes[4].float() == 0).all() and scale[4].item() == pytest.approx(G.EPS / G.FP8_MAX, rel=1e-6)
    ref_codes, ref_scale = G.reference(h)  # the torch fp32 path the CPU emulation uses
    same = (codes.float() == ref_codes.float()).float().mean().item()
    assert same > 0.99, f"only {same:.4f} of the codes equal the torch fp32 reference's"


def test_leading_dims_and_strided_rows():
    base = _h(2 * 7 * 3, 40).view(2, 7, 3 * 40)
    h = base[..., 40:80]  # (2, 7, 40), row stride 120: no copy needed
    codes, scale = torch.ops.vdrt.gelu_quant_fp8(h)
    assert codes.shape == (2, 7, 40) and scale.shape == (2, 7, 1)
    _check(h.reshape(-1, 40), codes.reshape(-1, 40), scale.reshape(-1, 1))


def test_outliers_dominate_their_tokens_scale_only():
    """Per-token scales: a token with an outlier gets a coarse grid, its neighbours keep theirs."""
    h = randn(8, 64, device="cpu") * 0.5
    h[3, 5] = 300.0
    codes, scale = G.launch(h)
    _check(h, codes, scale)
    assert scale[3].item() == pytest.approx(300.0 / G.FP8_MAX, rel=1e-6)
    others = scale[[0, 1, 2, 4, 5, 6, 7]]
    assert (others < 5.0 / G.FP8_MAX).all()  # |gelu(h)| < 5 for |h| < 5: their grids stay fine


@pytest.mark.parametrize("bad, match", [
    (torch.ones(4, 8, dtype=torch.int32), "bf16/fp16/fp32"),
    (torch.ones(4, 0), "C >= 1"),
    (torch.ones(8, 4).t(), "unit stride"),
])
def test_bad_input_refused_in_one_line(bad, match):
    with pytest.raises(ConfigError, match=match) as e:
        torch.ops.vdrt.gelu_quant_fp8(bad)
    assert "\n" not in str(e.value)


def test_fake_impl_compile_and_export():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        codes, scale = torch.ops.vdrt.gelu_quant_fp8(mode.from_tensor(_h(6, 32)))
    assert (codes.dtype, codes.shape, scale.shape) == (torch.float8_e4m3fn, (6, 32), (6, 1))

    class M(torch.nn.Module):
        def forward(self, h):
            codes, scale = torch.ops.vdrt.gelu_quant_fp8(h)
            return codes.float() * scale

    h = _h(5, 32, torch.float32)
    want = M()(h)
    got = torch.compile(M(), fullgraph=True, backend="aot_eager")(h)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    ep = torch.export.export(M(), (h,))
    assert any("gelu_quant_fp8" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(h), want, rtol=0, atol=0)


def test_bytes_saved_by_fusion():
    b = G.bytes_moved(32760, 8960)
    assert b["separate"] - b["fused"] == 32760 * 8960 * 4  # bf16: GELU's write + the quantizer's read


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("c", [8960, 13824, 20000], ids=["1.3b", "14b", "two-pass"])
def test_gpu_wan_shapes(c):
    h = _h(4096, c, device="cuda")
    out = (poisoned((4096, c), torch.float8_e4m3fn), poisoned((4096, 1), torch.float32))
    codes, scale = G.launch(h, out=out)
    # the GPU's exp/division are approximate: allow one more e4m3 ulp's worth (|g| / 8) on the error bound
    g64 = torch.nn.functional.gelu(h.double(), approximate="tanh")
    err = (codes.double() * scale.double() - g64).abs()
    assert torch.isfinite(err).all() and (err <= 2 * _bound(g64, scale)).all()
    ref_codes, _ = G.reference(h)
    assert (codes.float() != ref_codes.float()).float().mean().item() < 1e-3


_FRONT_END = """
try:
    from triton.compiler import ASTSource  # noqa: F401  (internal API: skip if it moved)
except ImportError as e:
    print(f"skip: this Triton has no ASTSource front end ({e})"); raise SystemExit(0)
import ttir_helpers
from vdrt.kernels import gelu_quant as G
sig = {"H": "*bf16", "Q": "*fp8e4nv", "S": "*fp32", "R": "i32", "C": "i32", "stride_hr": "i32", "stride_qr": "i32"}
for one_pass, block_c in ((True, 16384), (False, 2048)):
    m = ttir_helpers.ttir(G._gelu_quant_kernel, sig, {"EMULATE": False, "BLOCK_R": 1, "BLOCK_C": block_c,
                                                      "ONE_PASS": one_pass})
    assert "tt.func" in str(m)
print("2 variants compiled")
"""


def test_kernel_compiles_for_sm90(tmp_path):
    """Compiled-mode front end in a fresh process (this session's kernels are interpreter objects)."""
    import ttir_helpers

    out = ttir_helpers.front_end_in_fresh_process(tmp_path, _FRONT_END)
    assert out == "2 variants compiled", out
