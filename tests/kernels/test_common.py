"""kernels/_common.traceable: wrap_triton only while torch traces, the plain kernel in eager."""
import torch

from vdrt.kernels._common import traceable


def _jit_kernel():
    """A compiled-mode JITFunction even in a TRITON_INTERPRET=1 session (wrap_triton refuses interpreted ones)."""
    from triton.runtime.jit import JITFunction

    def noop(X):
        pass
    return JITFunction(noop)


def test_eager_tensors_get_the_plain_kernel():
    k = _jit_kernel()
    assert traceable(k, torch.ones(2), None, 3) is k


def test_fake_tensors_and_tracing_modes_get_the_wrapped_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    k = _jit_kernel()
    mode = FakeTensorMode()
    fake = mode.from_tensor(torch.ones(2))
    wrapped = traceable(k, fake)  # a fake input, no mode active
    assert wrapped is not k and type(wrapped).__name__ == "TraceableTritonKernelWrapper"
    with mode:
        assert traceable(k, torch.empty(2)) is not k  # inside the mode, whatever the arguments


def test_export_traces_through_the_wrapped_path(monkeypatch):
    """torch.export runs the op body with fake tensors: traceable must see tracing there."""
    seen = []
    import vdrt.kernels._common as common

    real = common._tracing

    def spy(tensors):
        seen.append(real(tensors))
        return seen[-1]

    monkeypatch.setattr(common, "_tracing", spy)

    class M(torch.nn.Module):
        def forward(self, x):
            traceable(_jit_kernel(), x)
            return x * 2

    torch.export.export(M(), (torch.ones(3),), strict=False)
    assert seen and all(seen)
    seen.clear()
    M()(torch.ones(3))
    assert seen == [False]
