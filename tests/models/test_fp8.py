"""Producer-fed fp8 in the blocks (vdrt/models/fp8.py): the same codes as the separate-quantization path,
close to the unquantized block, unchanged paths when fp8 is not chosen, and traceable (compile, export).

Bounds (measured on these CPU blocks, fresh random inputs each run):
- fp32 blocks: producer-fed == separate quantization, bit for bit (the emulated adaLN and GELU quantize the
  very fp32 values the separate path's quantizer reads, so the codes are the same).
- bf16 blocks: the separate path quantizes the bf16-rounded adaLN / GELU output, the producers the fp32
  value: about 2% of the codes move one e4m3 step; the block outputs then differ by 1-4% of the block's
  update (bound 0.06), less than either path's distance from the unquantized block (5-6%, bound 0.10).
"""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("triton")

from vdrt import ops  # noqa: E402
from vdrt.models import fp8  # noqa: E402
from vdrt.models.factorized import FactorizedConfig  # noqa: E402
from vdrt.models.factorized_blocks import Block  # noqa: E402
from vdrt.models.wan_blocks import WanBlock, WanRope  # noqa: E402

GRID = (2, 4, 4)  # (f, h, w): 32 tokens


def _wan(dtype=torch.float32):
    blk = WanBlock(64, 128, 4, 1e-6, cross_attn_norm=True, qk_norm=True, image=False).eval()
    x = torch.randn(2, 32, 64)
    x[..., :2] *= 20  # heavy channels in the residual stream, as DiTs have
    cos, sin = WanRope(16, 64)(*GRID)
    args = (x.to(dtype), torch.randn(2, 6, 64), torch.randn(2, 8, 64).to(dtype), None, cos, sin, GRID)
    return blk.to(dtype), args


def _run(blk, args, linear):
    with torch.no_grad(), ops.use(linear=linear):
        return blk(*args)


def _rel(a, b, x):
    """|a - b| relative to the block's update b - x (what the block adds to the residual stream)."""
    return ((a.double() - b.double()).norm() / (b.double() - x.double()).norm()).item()


def test_active_only_when_fp8_linears_are_chosen():
    x = torch.randn(1, 4, 32)
    for name, want in (("auto", False), ("torch", False), ("vdrt-fp8-separate", False), ("vdrt-int8", False),
                       ("vdrt-fp8", True)):
        with ops.use(linear=name):
            assert fp8.active(x) is want, name


def test_other_choices_never_touch_the_producer_path(monkeypatch):
    blk, args = _wan()

    def boom(*a, **k):
        raise AssertionError("producer-fed path taken")

    monkeypatch.setattr(fp8, "modulate", boom)
    monkeypatch.setattr(fp8, "gelu", boom)
    for name in ("torch", "vdrt-fp8-separate", "vdrt-int8"):
        _run(blk, args, name)


def test_wan_block_fp32_producers_equal_separate_and_are_close_to_unquantized():
    blk, args = _wan()
    ref, sep, prod = (_run(blk, args, n) for n in ("torch", "vdrt-fp8-separate", "vdrt-fp8"))
    assert torch.isfinite(prod).all()
    assert torch.equal(prod, sep)
    err = _rel(prod, ref, args[0])
    assert 1e-3 < err < 0.10, err  # lossy (never exactly the unquantized block), by the codes' error only


def test_wan_block_bf16_producers_near_separate():
    blk, args = _wan(torch.bfloat16)
    ref, sep, prod = (_run(blk, args, n) for n in ("torch", "vdrt-fp8-separate", "vdrt-fp8"))
    assert prod.dtype == torch.bfloat16 and torch.isfinite(prod).all()
    x = args[0]
    d_sep, d_ref, d_sep_ref = _rel(prod, sep, x), _rel(prod, ref, x), _rel(sep, ref, x)
    assert 0 < d_sep < 0.06, d_sep
    assert d_ref < 0.10 and d_sep_ref < 0.10, (d_ref, d_sep_ref)


def test_adaln_emulation_writes_the_kernels_codes():
    """The CPU emulation (torch) and the adaLN kernel (interpreter) quantize the same fp32 values."""
    from vdrt.kernels import adaln

    x = torch.randn(2, 16, 64).bfloat16()
    mod = torch.randn(2, 6, 64)
    shift, scale = mod[:, 0:1], mod[:, 1:2]
    qa = fp8.modulate(x, shift, scale, 1e-6)
    codes, _, s = adaln.launch(x, shift, scale, fp8=True)
    assert qa.codes.dtype == torch.float8_e4m3fn and qa.scale.shape == (2, 16, 1) and qa.dtype == torch.bfloat16
    torch.testing.assert_close(qa.scale, s, rtol=1e-6, atol=0)
    same = (qa.codes.float() == codes.float()).float().mean().item()
    assert same > 0.995, same  # fp32 statistics summed in another order may move a code one step


def _factorized():
    cfg = FactorizedConfig(dim=64, num_heads=4, num_layers=1, ffn_mult=2.0, norm_affine=True, text_dim=64)
    return Block(cfg, temporal=False).eval(), (torch.randn(2, 32, 64), torch.randn(2, 6, 64), torch.randn(2, 8, 64), 2)


def test_factorized_block_fp32_producers_equal_separate():
    blk, args = _factorized()
    ref, sep, prod = (_run(blk, args, n) for n in ("torch", "vdrt-fp8-separate", "vdrt-fp8"))
    assert torch.equal(prod, sep)
    assert 1e-3 < _rel(prod, ref, args[0]) < 0.10


def test_wan_block_fp8_under_compile_and_export():
    blk, args = _wan()
    want = _run(blk, args, "vdrt-fp8")
    with torch.no_grad(), ops.use(linear="vdrt-fp8"):
        got = torch.compile(blk, backend="aot_eager")(*args)
        tensors = args[:3]
        ep = torch.export.export(_Call(blk, args[3:]), tensors, strict=False)
        exported = ep.module()(*tensors)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(exported, want, rtol=1e-5, atol=1e-5)
    assert any("fp8_linear_prequant" in str(n.target) for n in ep.graph.nodes)


class _Call(torch.nn.Module):
    """The block with its non-tensor arguments (image, rope tables, grid) bound."""

    def __init__(self, blk, rest):
        super().__init__()
        self.blk, self.rest = blk, rest

    def forward(self, x, e0, ctx):
        return self.blk(x, e0, ctx, *self.rest)


def test_quantized_activation_shape_and_dequantize():
    x = torch.randn(3, 5, 32)
    qa = fp8.quantize_fp32(x, torch.bfloat16)
    assert qa.shape == (3, 5, 32) and qa.dtype == torch.bfloat16
    back = qa.dequantize()
    assert back.dtype == torch.bfloat16
    assert ((back.float() - x).abs() <= x.abs() / 16 + qa.scale * 2.0**-10 + x.abs() * 2.0**-8).all()


def test_unfused_lora_sees_the_dequantized_producer_output():
    """An unfused LoRA hook on q gets x ~ codes * scale (what the fp8 linear multiplies), not a tuple."""
    from vdrt.models.lora.apply import _hook

    blk, args = _wan()
    slot = _hook(blk.self_attn.q)
    down, up = torch.randn(4, 64) * 0.1, torch.randn(64, 4) * 0.1
    slot.put("a", down, up, 1.0, torch.float32)
    with_lora = _run(blk, args, "vdrt-fp8")
    sep = _run(blk, args, "vdrt-fp8-separate")
    # the separate path's hook sees the unquantized x, this one codes * scale: the adapter's delta differs by
    # the codes' error (~4%) on the adapter's term (measured ~1% of the block's update here)
    assert torch.isfinite(with_lora).all() and 0 < _rel(with_lora, sep, args[0]) < 0.05
    slot.put("a", down, up, 0.0, torch.float32)  # coefficient 0: the adapter off
    assert not torch.equal(_run(blk, args, "vdrt-fp8"), with_lora)  # the adapter did change the output
