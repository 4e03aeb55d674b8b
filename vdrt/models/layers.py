"""Module wrappers that route every linear and norm through `vdrt.ops`.

They keep torch's parameter names (`weight`, `bias`) so state dicts look like plain
nn.Linear / nn.LayerNorm ones.
"""
from __future__ import annotations

import torch
from torch import nn

from vdrt import ops


class Linear(nn.Linear):
    """nn.Linear whose forward is `vdrt.ops.linear` (swappable for fp8/int8 kernels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.linear(x, self.weight, self.bias)


class LayerNorm(nn.Module):
    """LayerNorm over the last dim in fp32 (Wan's FP32LayerNorm), optionally affine."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm over the last dim with fp32 statistics, optionally with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x, self.weight, self.eps)
