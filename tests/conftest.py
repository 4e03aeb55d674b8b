"""Session-wide test setup.

Without a GPU, Triton kernels run on its CPU interpreter, and TRITON_INTERPRET must be set
before any module decorates a kernel: here, before any test module is imported. The op
registry never picks a kernel automatically for CPU tensors, so models and pipelines keep
the torch ops; kernel tests call the kernels (or force them) explicitly.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): on shared,
    loaded CI cores OpenMP's spinning makes 2 threads ~5x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
