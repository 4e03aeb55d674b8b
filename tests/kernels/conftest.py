"""Shared helpers for kernel tests: float64 references, poisoned outputs, flash-attention's tolerance rule.

Without a GPU the kernels run on Triton's CPU interpreter: tests/conftest.py sets
TRITON_INTERPRET=1 once, before any module decorates a kernel, and the op registry never picks a
kernel automatically for CPU tensors, so models and pipelines elsewhere keep the torch ops.

Test modules import these helpers as `from tests.kernels.conftest import ...`; the repo root
is appended to sys.path here so that works under plain `pytest` too (appended, so an
installed vdrt still wins over the checkout's folder).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

def randn(*shape, dtype=torch.float32, device=DEVICE) -> torch.Tensor:
    """Fresh random normal values (a new draw every run; never zeros)."""
    return torch.randn(*shape, dtype=torch.float32, device=device).to(dtype)


def poisoned(shape, dtype, device=DEVICE) -> torch.Tensor:
    """An output buffer full of NaN (0x7F bytes for fp8), so unwritten elements show."""
    if dtype in (torch.float8_e4m3fn, torch.uint8):
        return torch.full(shape, 0x7F, dtype=torch.uint8, device=device).view(dtype)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def max_err(x: torch.Tensor, ref64: torch.Tensor) -> float:
    """max |x - ref| in float64; NaN/inf anywhere gives inf (so NaN never passes)."""
    x = x.double()
    if not torch.isfinite(x).all():
        return float("inf")
    return (x - ref64).abs().max().item() if x.numel() else 0.0


def assert_close_to_reference(out, ref64, torch_lowp, mult: float = 3.0, what: str = "output") -> float:
    """flash-attention's rule: err(out) <= mult * err(torch in the same precision) + a floor.

    The floor (one unit of out's dtype at the output's scale) keeps exact references, where
    torch's own error is 0, from demanding bit-equality. Returns the measured error.
    """
    assert out.shape == ref64.shape, f"{what}: shape {tuple(out.shape)} != {tuple(ref64.shape)}"
    err, torch_err = max_err(out, ref64), max_err(torch_lowp, ref64)
    floor = torch.finfo(out.dtype).eps * max(ref64.abs().max().item(), 1e-6)
    tol = mult * torch_err + floor
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g} (torch's own error {torch_err:.3g})"
    return err


def strided_like(x: torch.Tensor, pad: int = 8) -> torch.Tensor:
    """The same values in a non-contiguous view: the last dim sliced out of a wider buffer."""
    buf = torch.empty(*x.shape[:-1], x.shape[-1] + pad, dtype=x.dtype, device=x.device)
    buf.normal_()
    view = buf[..., : x.shape[-1]]
    view.copy_(x)
    return view
