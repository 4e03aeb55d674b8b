"""The generic diffusers path: SVD's UNet and Wan's transformer as-is, attention through vdrt.ops, built into
engines that equal the unmodified diffusers module (tiny random configs, CPU, fp32)."""
from __future__ import annotations

import copy
import os

import pytest
import torch
from export_helpers import rel_err

import vdrt

pytest.importorskip("diffusers")
from vdrt.export.diffusers import build_diffusers, swap_attention  # noqa: E402

SVD_SHAPES = {"batch": (1, 2, 2), "frames": (2, 3, 6), "height": (4, 8, 16), "width": (4, 8, 16)}
WAN_SHAPES = {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (4, 8, 16), "width": (4, 8, 16),
              "text_len": (1, 16, 32)}
slow = pytest.mark.skipif(os.environ.get("VDRT_SLOW") != "1", reason="several minutes of CPU compile; VDRT_SLOW=1")


def tiny_svd():
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    return UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, cross_attention_dim=32, num_attention_heads=(2, 4),
        num_frames=4).eval()


def tiny_wan():
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=16,
                                 out_channels=16, text_dim=32, freq_dim=64, ffn_dim=128, num_layers=1,
                                 rope_max_seq_len=64).eval()


def svd_call(b, f, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, f, 8, h, w, generator=g), torch.rand(b, generator=g) * 1000,
            torch.randn(b, 1, 32, generator=g), torch.randn(b, 3, generator=g))


def wan_call(b, f, h, w, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 16, f, h, w, generator=g), torch.rand(b, generator=g) * 1000,
            torch.randn(b, t, 32, generator=g))


@torch.no_grad()
def svd_ref(m, x, t, c, a):
    return m(x, t, c, a, return_dict=False)[0]


@torch.no_grad()
def wan_ref(m, x, t, c):
    return m(x, t, c, return_dict=False)[0]


@pytest.mark.parametrize("make, call, ref", [(tiny_svd, lambda: svd_call(2, 3, 8, 8), svd_ref),
                                             (tiny_wan, lambda: wan_call(1, 3, 8, 8, 9), wan_ref)])
def test_swapped_processors_route_attention_through_vdrt_ops(make, call, ref, monkeypatch):
    base = make()
    swapped = copy.deepcopy(base)
    n = swap_attention(swapped)
    calls = []
    real = vdrt.ops.attention
    monkeypatch.setattr(vdrt.ops, "attention", lambda q, k, v: calls.append(q.shape) or real(q, k, v))
    x = call()
    want = ref(base, *x)
    assert not calls  # the unmodified module does not use vdrt.ops
    assert rel_err(ref(swapped, *x), want) <= 1e-6
    assert n >= 2 and len(calls) >= n


@pytest.fixture(scope="module")
def wan_engines(build_cache, tmp_path_factory):
    m = tiny_wan()
    root = tmp_path_factory.mktemp("diffusers-wan")
    return m, {b: build_diffusers(m, b, root / b, precision="fp32", shapes=WAN_SHAPES) for b in ("onnx", "aoti")}


@pytest.mark.parametrize("backend", ["onnx", "aoti"])
def test_wan_engine_matches_diffusers(wan_engines, backend):
    m, engines = wan_engines
    eng = engines[backend]
    for i, shape in enumerate([(1, 3, 8, 8, 16), (2, 5, 12, 16, 7)]):
        x = wan_call(*shape, seed=i)
        assert rel_err(eng(*x), wan_ref(m, *x)) <= 1e-4, (backend, shape)
    assert eng.config.family == "wan" and eng.config.num_layers == 1  # a vdrt WanConfig: Pipeline can run it
    assert eng.manifest["build"]["options"]["diffusers_class"] == "WanTransformer3DModel"


def _check_svd(eng, m):
    prof = eng.manifest["profiles"]
    assert (prof["batch"]["min"], prof["batch"]["max"]) == (2, 2)  # SVD's UNet specializes its batch
    assert (prof["frames"]["min"], prof["frames"]["max"]) == (2, 6)
    for i, (b, f, h, w) in enumerate([(2, 3, 8, 8), (2, 5, 12, 16)]):
        x = svd_call(b, f, h, w, seed=i)
        out = eng(x[0], x[1], x[2], added_time_ids=x[3])
        assert out.shape == (b, f, 4, h, w)
        assert rel_err(out, svd_ref(m, *x)) <= 1e-4, (b, f, h, w)
    assert eng.config.family == "diffusers" and eng.config.layout == "svd"


def test_svd_onnx_engine_matches_diffusers(build_cache, tmp_path):
    m = tiny_svd()
    _check_svd(build_diffusers(m, "onnx", tmp_path / "svd", precision="fp32", shapes=SVD_SHAPES), m)


@slow
def test_svd_aoti_engine_matches_diffusers(build_cache, tmp_path):
    m = tiny_svd()
    _check_svd(build_diffusers(m, "aoti", tmp_path / "svd", precision="fp32", shapes=SVD_SHAPES), m)


def test_unsupported_module_is_refused(tmp_path):
    from vdrt.errors import ConfigError

    with pytest.raises(ConfigError, match="takes .*UNetSpatioTemporalConditionModel"):
        build_diffusers(torch.nn.Linear(2, 2), "onnx", tmp_path / "x", precision="fp32", shapes=WAN_SHAPES)
