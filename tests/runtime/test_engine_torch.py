"""The torch engine: eager equals the module; CUDA graphs per shape bucket replay equal to eager (GPU)."""
from __future__ import annotations

import pytest
import torch

import vdrt
from vdrt.engines.torch import TorchEngine
from vdrt.errors import ConfigError


def _inputs(cfg, f, h, w, device="cpu", dtype=torch.float32, b=1):
    return (torch.randn(b, cfg.in_channels, f, h, w, device=device, dtype=dtype),
            torch.rand(b, device=device) * 1000, torch.randn(b, 11, cfg.text_dim, device=device, dtype=dtype))


def test_eager_engine_matches_module_and_reports_protocol():
    den = vdrt.load_denoiser("wan-tiny")
    eng = TorchEngine(den)
    x = _inputs(den.config, 3, 8, 8)
    assert torch.equal(eng(*x), den(*x))
    assert eng.device.type == "cpu" and eng.manifest["backend"] == "torch"
    assert eng.manifest["model_config"]["family"] == "wan"
    from vdrt.engines.base import Engine

    assert isinstance(eng, Engine) and eng.dtype == torch.float32 and eng.config is den.config
    assert not isinstance(den, Engine)  # a bare module lacks .manifest / .dtype: wrap it


def test_cuda_graphs_need_cuda():
    with pytest.raises(ConfigError, match="CUDA"):
        TorchEngine(vdrt.load_denoiser("wan-tiny"), cuda_graphs=True)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["wan-tiny", "factorized-tiny"])
def test_cuda_graph_replay_equals_eager(name):
    den = vdrt.load_denoiser(name, dtype=torch.bfloat16, device="cuda")
    eager, graphed = TorchEngine(den), TorchEngine(den, cuda_graphs=True)
    for shape in [(3, 16, 16), (5, 8, 24), (3, 16, 16)]:
        for _ in range(2):  # fresh inputs each replay: the static buffers must really be refreshed
            x = _inputs(den.config, *shape, device="cuda", dtype=torch.bfloat16, b=2)
            want, got = eager(*x), graphed(*x)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert graphed.num_graphs() == 2
