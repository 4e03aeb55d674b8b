"""fp8 activations made by their producers, for the blocks' norm -> linear and GELU -> linear chains.

With op "linear" forced to "vdrt-fp8" (`vdrt.ops.use(linear="vdrt-fp8")`, `--ops linear=vdrt-fp8`), a
block asks `active(x)`; if so it calls the adaLN once with fp8 output (`modulate`) and hands the
`vdrt.ops.QuantizedActivation` (e4m3 codes, per-token fp32 scales) to its q/k/v (or FFN-in) linears,
and the FFN-in's output goes through GELU + quantize (`gelu`) to the FFN-out linear: no linear re-reads
and re-quantizes a bf16 activation. "vdrt-fp8-separate" keeps the old path (each linear quantizes its
own input) for comparison; any other choice leaves the blocks exactly as they were.

On CUDA: kernels/adaln.py (fp8 output) and kernels/gelu_quant.py. On the CPU (and for inputs those
kernels cannot take): the same numerics in torch, so the quality cost is measured without a GPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vdrt import ops
from vdrt.ops import QuantizedActivation

PRODUCER_IMPL = "vdrt-fp8"


def active(x: torch.Tensor) -> bool:
    """Whether the producer-fed fp8 path applies to activations like x (B, L, D)."""
    if ops.get_choice("linear") != PRODUCER_IMPL:
        return False
    if x.device.type == "cpu":
        return True  # emulated: the kernels' quantization in torch
    return (x.is_cuda and x.dtype == torch.bfloat16 and x.shape[-1] % 16 == 0 and not torch.compiler.is_compiling()
            and torch.cuda.get_device_capability(x.device) >= (8, 9))


def modulate(x, shift, scale, eps: float, weight=None, bias=None) -> QuantizedActivation:
    """(B, L, D), (B, 1|L, D) x2 -> fp8 of LayerNorm(x) * (1 + scale) + shift, one scale per token."""
    from vdrt.kernels import adaln

    if x.is_cuda and adaln.supports(x, shift, scale, eps, weight, bias):
        codes, _, s = adaln.adaln(x, shift, scale, weight=weight, bias=bias, eps=eps, fp8=True)
        return QuantizedActivation(codes, s, x.dtype)
    return quantize_fp32(modulate_fp32(x, shift, scale, eps, weight, bias), x.dtype)


def modulate_fp32(x, shift, scale, eps: float, weight=None, bias=None) -> torch.Tensor:
    """ops.adaln_modulate_torch before its cast: the adaLN kernel quantizes this fp32 value."""
    w = weight.float() if weight is not None else None
    b = bias.float() if bias is not None else None
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps) * (1 + scale.float()) + shift.float()


def gelu(h: torch.Tensor) -> QuantizedActivation:
    """(..., C) -> fp8 of gelu_tanh(h), one scale per token (kernels/gelu_quant.py on CUDA)."""
    from vdrt.kernels import gelu_quant

    if h.is_cuda:
        codes, s = torch.ops.vdrt.gelu_quant_fp8(h)
        return QuantizedActivation(codes, s, h.dtype)
    codes, s = gelu_quant.reference(h)
    return QuantizedActivation(codes, s, h.dtype)


def quantize_fp32(y: torch.Tensor, dtype: torch.dtype) -> QuantizedActivation:
    """fp32 (..., C) -> its per-token e4m3 codes and scales, as the kernels write them."""
    from vdrt.kernels.quant import reference_quantize

    codes, s = reference_quantize(y, "fp8")
    return QuantizedActivation(codes, s, dtype)
