"""vdrt's Wan2.1 VAE: parity with diffusers' AutoencoderKLWan (same state dict, every parameter perturbed),
chunked causal calls equal to frame-by-frame ones, exact rewrites (sub-pixel upsample, conv taps), the
bf16 path's error bound, and bad input refused with one clear line."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from vdrt.errors import ConfigError
from vdrt.models.wan_vae import WanVAE, WanVAEConfig
from vdrt.models.wan_vae.fast import FastOptions, FastWanVAE, KINDS, param_kind, plan_chunk, prepare
from vdrt.models.wan_vae.layers import conv3d_taps2d, phase_weights, upsample_conv_subpixel
from vdrt.models.wan_vae.model import chunk_sizes

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = WanVAEConfig.from_name("wan-vae-tiny")


def perturbed(cfg: WanVAEConfig = TINY, seed: int = 0) -> WanVAE:
    """A VAE whose every parameter differs from its init (norm gains too), so no weight can be ignored."""
    torch.manual_seed(seed)
    m = WanVAE(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1 + 0.2 * torch.randn_like(p))  # no parameter is zero at init (biases are uniform)
    return m


def clip(frames: int = 9, h: int = 16, w: int = 24, seed: int = 0) -> torch.Tensor:
    """A structured clip, (1, 3, T, H, W) in [-1, 1]: a gradient and a square moving right."""
    t = torch.linspace(0, 1, frames).view(-1, 1, 1)
    y, x = torch.linspace(0, 1, h).view(1, -1, 1), torch.linspace(0, 1, w).view(1, 1, -1)
    base = torch.stack([c.expand(frames, h, w) for c in (x + 0 * y, y + 0 * x, 0.5 + 0.3 * torch.sin(6 * x + 4 * t))])
    square = ((x - 0.2 - 0.5 * t).abs() < 0.2) & ((y - 0.5).abs() < 0.25)
    return (torch.where(square, torch.tensor([0.9, 0.1, 0.2]).view(3, 1, 1, 1), base) * 2 - 1)[None]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * torch.log10(4 / ((a.double() - b.double()) ** 2).mean()).item()


@pytest.fixture(scope="module")
def pair():
    """(ours, diffusers') with the same perturbed weights, fp32."""
    diffusers = pytest.importorskip("diffusers")
    ours = perturbed()
    ref = diffusers.AutoencoderKLWan(**TINY.to_diffusers()).eval()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


# --- parity with diffusers ----------------------------------------------------------------------------
def test_state_dict_is_diffusers(pair):
    ours, ref = pair
    a, b = ours.state_dict(), ref.state_dict()
    assert sorted(a) == sorted(b)
    assert all(a[k].shape == b[k].shape for k in a)


def test_same_seed_same_weights_as_diffusers():
    """Modules are built in diffusers' order: a seeded random VAE is diffusers' seeded random VAE."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(7)
    ours = WanVAE(TINY).state_dict()
    torch.manual_seed(7)
    ref = diffusers.AutoencoderKLWan(**TINY.to_diffusers()).state_dict()
    assert all(torch.equal(ours[k], ref[k]) for k in ref)


@pytest.mark.parametrize("chunk", [1, None, 2])
def test_decode_matches_diffusers(pair, chunk, record_property):
    ours, ref = pair
    z = torch.randn(1, TINY.z_dim, 4, 2, 3)
    with torch.no_grad():
        want = ref.decode(z).sample
    err = rel(ours.decode(z, chunk=chunk), want)
    record_property("rel_err", err)
    assert (want.abs() >= 1).float().mean() < 0.05  # not a clamped-everywhere comparison
    assert err < 1e-5


@pytest.mark.parametrize("chunk", [1, None, 2])
def test_encode_matches_diffusers(pair, chunk, record_property):
    ours, ref = pair
    x = clip()
    with torch.no_grad():
        want = ref.encode(x).latent_dist.mode()
    err = rel(ours.encode(x, chunk=chunk), want)
    record_property("rel_err", err)
    assert err < 1e-5


# --- chunked causal calls ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def m64():
    return perturbed().double()


def _decode_sizes(m, z, sizes):
    state, outs, start = {}, [], 0
    for n in sizes:
        outs.append(m.decode_chunk(z[:, :, start:start + n], state))
        start += n
    return torch.cat(outs, 2)


@pytest.mark.parametrize("sizes", [[5], [1, 4], [2, 3], [1, 2, 2], [3, 1, 1], [4, 1]])
def test_decode_any_chunking_equals_frame_by_frame(m64, sizes):
    z = torch.randn(1, TINY.z_dim, 5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        want = _decode_sizes(m64, z, [1] * 5)
        got = _decode_sizes(m64, z, sizes)
    assert want.shape == got.shape == (1, 3, 17, 16, 24)
    assert (got - want).abs().max() < 1e-12


@pytest.mark.parametrize("bounds", [[(0, 9)], [(0, 5), (5, 9)], [(0, 1), (1, 9)]])
def test_encode_any_chunking_equals_diffusers_chunks(m64, bounds):
    x = clip().double()
    with torch.no_grad():
        want = m64.encode(x, chunk=1)
        state = {}
        got = torch.cat([m64.encode_chunk(x[:, :, a:b], state) for a, b in bounds], 2)
    assert (got - want).abs().max() < 1e-12


def test_decode_is_causal(m64):
    """Later latent frames never change earlier pixels: what lets a short last chunk be padded."""
    z = torch.randn(1, TINY.z_dim, 4, 2, 3, dtype=torch.float64)
    full, prefix = m64.decode(z, chunk=2), m64.decode(z[:, :, :2], chunk=1)
    assert torch.equal(full[:, :, :5], prefix) or (full[:, :, :5] - prefix).abs().max() < 1e-12


def test_chunk_sizes():
    assert chunk_sizes(21, 5) == [1, 5, 5, 5, 5]
    assert chunk_sizes(7, 4) == [1, 4, 2]
    assert chunk_sizes(1, 4) == [1]
    assert chunk_sizes(6, None) == [6]
    with pytest.raises(ConfigError, match="chunk=0"):
        chunk_sizes(6, 0)


# --- exact rewrites --------------------------------------------------------------------------------------
def test_subpixel_upsample_is_nearest_then_conv():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(3, 5, 6, 7, generator=g, dtype=torch.float64)
    w, b = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    want = F.conv2d(F.interpolate(f, scale_factor=2.0, mode="nearest-exact"), w, b, padding=1)
    got = upsample_conv_subpixel(f, phase_weights(w), b.repeat(4))
    assert got.shape == want.shape == (3, 4, 12, 14)
    assert (got - want).abs().max() < 1e-12


def test_taps2d_is_conv3d():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 6, 5, 7, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, 3, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    want = F.conv3d(x, w, b, padding=(0, 1, 1))
    assert (conv3d_taps2d(x, w, b, (1, 1)) - want).abs().max() < 1e-12


# --- the fast path -------------------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [FastOptions(dtype="float32", chunk=2),
                                  FastOptions(dtype="float32", chunk=3, conv_impl="taps2d", subpixel=False),
                                  FastOptions(dtype="float32", chunk=2, channels_last=False)])
def test_fast_fp32_matches_reference(opts, record_property):
    m = perturbed()
    z = torch.randn(1, TINY.z_dim, 4, 2, 3)
    x = clip()
    fast = FastWanVAE(copy.deepcopy(m), opts)
    errs = rel(fast.decode(z), m.decode(z, chunk=1)), rel(fast.encode(x), m.encode(x, chunk=1))
    record_property("rel_err", max(errs))
    assert max(errs) < 1e-5


def test_compiled_chunk_pads_a_short_tail(monkeypatch):
    """compile="chunk" keeps one shape: a short last chunk is padded (exact, the VAE is causal) and trimmed."""
    from vdrt.models.wan_vae import fast as fast_mod

    shapes = []

    def fake_compile(step, **kw):
        return lambda x, *h: shapes.append(tuple(x.shape)) or step(x, *h)
    monkeypatch.setattr(fast_mod.torch, "compile", fake_compile)
    m = perturbed()
    fast = FastWanVAE(copy.deepcopy(m), FastOptions(dtype="float32", chunk=3, compile="chunk"))
    for f in (6, 3, 8):  # 1 + 3 + 2, 1 + 2, 1 + 3 + 3 + 1: the tails are short
        z = torch.randn(1, TINY.z_dim, f, 2, 3)
        assert rel(fast.decode(z), m.decode(z, chunk=1)) < 1e-5
    assert {s[2] for s in shapes} == {3}
    x = clip()  # 9 frames = 1 + 4 + 4: 4-frame tails padded to 12
    assert rel(fast.encode(x), m.encode(x, chunk=1)) < 1e-5
    assert {s[2] for s in shapes} == {3, 12}


def test_bf16_error_is_pytorchs_own(record_property):
    """bf16 fast path vs fp64: within 2x the error of the plain model cast to bf16, and >= 40 dB PSNR."""
    m = perturbed(seed=3).double()
    z = m.encode(clip().double())
    want = m.decode(z)
    plain = copy.deepcopy(m).to(torch.bfloat16).decode(z.to(torch.bfloat16))
    ours = FastWanVAE(copy.deepcopy(m).float(), FastOptions(chunk=2)).decode(z.float())
    record_property("psnr_bf16_fast", psnr(ours, want))
    record_property("psnr_bf16_plain", psnr(plain, want))
    assert rel(ours, want) <= 2 * rel(plain, want)
    assert psnr(ours, want) >= 40


def test_prepare_keeps_named_kinds_in_fp32():
    m = prepare(perturbed(), FastOptions(keep_fp32=("conv_out", "attention"), channels_last=True))
    for name, p in m.named_parameters():
        want = torch.float32 if param_kind(name) in ("conv_out", "attention") else torch.bfloat16
        assert p.dtype == want, name
        if p.dim() == 5:
            assert p.is_contiguous(memory_format=torch.channels_last_3d), name
    assert {param_kind(n) for n, _ in m.named_parameters()} == set(KINDS)


def test_frames_stream_is_decode_as_uint8():
    from vdrt.io import frames_from_float

    fast = FastWanVAE(perturbed(), FastOptions(dtype="float32", chunk=2))
    z = torch.randn(1, TINY.z_dim, 4, 2, 3)
    chunks = list(fast.frames_stream(z))
    assert len(chunks) > 1 and chunks[0].shape == (1, 16, 24, 3) and chunks[0].dtype == torch.uint8
    assert torch.equal(torch.cat(chunks), torch.from_numpy(frames_from_float(fast.decode(z)[0].float())))


def test_normalize_round_trip():
    fast = FastWanVAE(perturbed(), FastOptions(dtype="float32"))
    mu = torch.randn(1, TINY.z_dim, 2, 2, 3)
    mean = torch.tensor(TINY.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(TINY.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(fast.normalize(mu), (mu - mean) / std)
    assert torch.allclose(fast.denormalize(fast.normalize(mu)), mu, atol=1e-6)


def test_plan_chunk(monkeypatch):
    from vdrt.models.wan_vae import fast as fast_mod

    real = WanVAEConfig()
    assert plan_chunk(real, FastOptions(chunk=6), 21, 60, 104) == 5  # a divisor of the 20 frames after frame 0
    assert plan_chunk(real, FastOptions(chunk=5), 18, 60, 104) == 5  # 17 has none: a padded / shorter tail
    assert plan_chunk(real, FastOptions(chunk=20), 21, 60, 104) == 10  # 20 would pass 2^31 elements
    assert plan_chunk(real, FastOptions(chunk=6, compile="chunk"), 21, 60, 104) == 6  # one shape: tails padded
    assert plan_chunk(real, FastOptions(chunk=20, compile="chunk"), 3, 60, 104) == 13  # the 2^31 cap only
    monkeypatch.setattr(fast_mod, "MAX_ELEMENTS", 10 ** 6)
    with pytest.raises(ConfigError, match="too large"):
        plan_chunk(real, FastOptions(), 21, 60, 104)


# --- bad input -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_tiny():
    return FastWanVAE(perturbed(), FastOptions(dtype="float32"))


@pytest.mark.parametrize("z, match", [
    (torch.randn(1, 3, 2, 2, 3), "latents have 3 channels, this VAE's z_dim is 4"),
    (torch.randn(4, 2, 2, 3), r"takes \(B, 4, F, h, w\) latents"),
    (torch.randn(1, 4, 0, 2, 3), "empty latents"),
    (torch.full((1, 4, 2, 2, 3), float("nan")), "NaN or Inf"),
    (torch.ones(1, 4, 2, 2, 3, dtype=torch.int64), "floating tensor"),
])
def test_bad_latents(fast_tiny, z, match):
    with pytest.raises(ConfigError, match=match):
        fast_tiny.decode(z)
    with pytest.raises(ConfigError, match=match):
        perturbed().decode(z)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(1, 3, 8, 16, 24), "8 frames; the causal VAE takes 4k\\+1 frames"),
    (torch.zeros(1, 3, 5, 20, 24), "multiples of 8"),
    (torch.zeros(1, 4, 5, 16, 24), r"takes \(B, 3, T, H, W\)"),
    (torch.zeros(3, 5, 16, 24), r"takes \(B, 3, T, H, W\)"),
])
def test_bad_video(fast_tiny, x, match):
    with pytest.raises(ConfigError, match=match):
        fast_tiny.encode(x)


def test_frames_stream_takes_one_clip(fast_tiny):
    with pytest.raises(ConfigError, match="one clip"):
        next(fast_tiny.frames_stream(torch.randn(2, 4, 2, 2, 3)))


@pytest.mark.parametrize("cfg, match", [
    ({"is_residual": True}, "is_residual=True is not supported"),
    ({"patch_size": 2}, "patch_size=2 is not supported"),
    ({"attn_scales": [0.5]}, "attn_scales"),
    ({"scale_factor_temporal": 8}, "scale_factor_temporal=8 disagrees"),
    ({"latents_mean": [0.0] * 3}, "z_dim=16 entries"),
    ({"temperal_downsample": [True]}, "needs 3 entries"),
])
def test_bad_config(cfg, match):
    with pytest.raises(ConfigError, match=match):
        WanVAEConfig.from_diffusers(cfg)


@pytest.mark.parametrize("kw, match", [
    ({"dtype": "int8"}, "VAE dtype"), ({"keep_fp32": ("bogus",)}, "unknown layer kinds"),
    ({"conv_impl": "fft"}, "conv_impl"), ({"compile": "yes"}, "compile="), ({"chunk": 0}, "chunk=0"),
])
def test_bad_options(kw, match):
    with pytest.raises(ConfigError, match=match):
        FastOptions(**kw)


def test_config_round_trips_through_diffusers_keys():
    assert WanVAEConfig.from_diffusers(WanVAEConfig().to_diffusers()) == WanVAEConfig()
    assert WanVAEConfig().time_factor == 4 and WanVAEConfig().space_factor == 8
    with pytest.raises(ConfigError, match="unknown wan-vae preset"):
        WanVAEConfig.from_name("wan9-vae")


# --- on the GPU (the device script runs these with -m gpu) ------------------------------------------------
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def real_gpu():
    """The real Wan2.1 config (random weights) on the GPU, a structured clip's latents, the fp32 decode
    (cuDNN TF32 off)."""
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    m = perturbed(WanVAEConfig(), seed=4).cuda()
    ref = FastWanVAE(copy.deepcopy(m), FastOptions(dtype="float32", channels_last=False, subpixel=False))
    z = ref.encode(clip(17, 128, 192).cuda())
    want = ref.decode(z).float()
    assert (want.abs() >= 1).float().mean() < 0.05  # not a clamped-everywhere comparison
    yield m, z, want
    torch.backends.cudnn.allow_tf32 = tf32


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("opts", [FastOptions(), FastOptions(compile="regions"), FastOptions(compile="chunk", chunk=2),
                                  FastOptions(conv_impl="taps2d"), FastOptions(channels_last=False, subpixel=False)])
def test_gpu_bf16_paths_keep_40db(real_gpu, opts, record_property):
    m, z, want = real_gpu
    got = FastWanVAE(copy.deepcopy(m), opts).decode(z)
    record_property("psnr_db", psnr(got, want))
    assert got.dtype == torch.bfloat16 and psnr(got, want) >= 40


@gpu
@pytest.mark.gpu
def test_gpu_chunk_step_compiles_once(real_gpu):
    """compile="chunk": one graph for every clip length (tails padded), layouts normalised between calls."""
    from torch._dynamo.utils import counters

    m, z, want = real_gpu
    torch._dynamo.reset()
    counters.clear()
    fast = FastWanVAE(copy.deepcopy(m), FastOptions(compile="chunk", chunk=3))
    for f in (5, 3, 4):
        assert psnr(fast.decode(z[:, :, :f]), want[:, :, :4 * f - 3]) >= 40
    assert counters["stats"]["unique_graphs"] == 1


@gpu
@pytest.mark.gpu
def test_gpu_fp32_fast_path_matches(real_gpu):
    m, z, want = real_gpu
    got = FastWanVAE(copy.deepcopy(m), FastOptions(dtype="float32", chunk=3)).decode(z)
    assert rel(got, want) < 1e-4


CL = {4: torch.channels_last, 5: torch.channels_last_3d}


class _Layouts(torch.overrides.TorchFunctionMode):
    """Records conv inputs that are not channels-last, and layout pins that had to copy (a layer lost the layout)."""

    def __init__(self):
        super().__init__()
        self.convs, self.lost = 0, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else None
        if func in (torch.conv2d, torch.conv3d):
            self.convs += 1
            if not x.is_contiguous(memory_format=CL[x.dim()]):
                self.lost.append(("conv input", tuple(x.shape)))
        if func is torch.Tensor.contiguous and kwargs.get("memory_format") in CL.values() and x.dim() == 5 \
                and x.shape[2] > 3 and not x.is_contiguous(memory_format=kwargs["memory_format"]):  # past chunk 0
            self.lost.append(("pinned by a copy", tuple(x.shape)))
        return func(*args, **kwargs)


@pytest.mark.parametrize("encode", [False, True])
def test_channels_last_flows_through(encode):
    """Every conv gets channels-last input and no layer drops the layout (a copy per conv on the GPU)."""
    fast = FastWanVAE(perturbed(), FastOptions(chunk=2))
    x = fast._input(clip() if encode else torch.randn(1, TINY.z_dim, 3, 2, 3))
    seen = _Layouts()
    with seen:
        fast.encode(x) if encode else fast.decode(x)
    assert seen.convs > 30 and not seen.lost
