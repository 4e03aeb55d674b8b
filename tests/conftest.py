"""Session-wide test setup.

Without a GPU, Triton kernels run on its CPU interpreter, and TRITON_INTERPRET must be set
before any module decorates a kernel: here, before any test module is imported. The op
registry never picks a kernel automatically for CPU tensors, so models and pipelines keep
the torch ops; kernel tests call the kernels (or force them) explicitly.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
