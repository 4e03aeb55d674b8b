"""Session-wide test setup.

Without a GPU, Triton kernels run on its CPU interpreter, and TRITON_INTERPRET must be set
before any module decorates a kernel: here, before any test module is imported. The op
registry never picks a kernel automatically for CPU tensors, so models and pipelines keep
the torch ops; kernel tests call the kernels (or force them) explicitly.

Shared helpers are imported as `from tests.<area>.<module> import ...` from any folder: the repo root
is appended to sys.path here, before any test module is collected (appended, so an installed vdrt
still wins over the checkout's folder).
"""
import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parents[1]))


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): on shared,
    loaded CI cores OpenMP's spinning makes 2 threads ~5x slower."""
    n, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # what `vdrt` commands run from these tests take as their --threads default
    yield
    torch.set_num_threads(n)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env
