"""The batched card generator: conditioning layouts per mode, paired noise, the sampling loop, bad input."""
import numpy as np
import pytest
import torch

from vdrt.errors import ConfigError, MediaError
from vdrt.export.tiny.data.procedural import batch
from vdrt.export.tiny.data.raster import to_float
from vdrt.export.tiny.quality import generate as G


def test_cond_layouts_per_mode():
    clips, _ = batch("test", 0, 2, )
    x = torch.from_numpy(to_float(clips))
    c = G.build_cond(8, "extend", clips, 3, 2, (17, 64, 64))
    assert c.shape == (2, 8, 17, 64, 64)
    assert (c[:, 3, :3] == 1).all() and (c[:, 3, 3:] == 0).all()
    torch.testing.assert_close(c[:, :3, :3], x[:, :, :3]) and (c[:, :3, 3:] == 0).all()
    assert (c[:, 4:] == 0).all()  # no hint
    v1 = G.build_cond(4, "interpolate", clips, None, 2, (17, 64, 64))
    assert v1.shape == (2, 4, 17, 64, 64) and v1[:, 3, 0].all() and v1[:, 3, -1].all() and not v1[:, 3, 5].any()
    slow = G.build_cond(8, "slowmo", clips, 4, 2, (17, 64, 64))
    assert slow[0, 3, :, 0, 0].tolist() == [1.0 if t % 4 == 0 else 0.0 for t in range(17)]
    v2v = G.build_cond(8, "v2v", clips, None, 2, (17, 64, 64))
    assert (v2v[:, :4] == 0).all() and (v2v[:, 7] == 1).all()
    torch.testing.assert_close(v2v[:, 4:7], x)
    small, _ = batch("test", 0, 2, __import__("vdrt.export.tiny.data.world", fromlist=["Geometry"]).Geometry(9, 32, 32))
    up = G.build_cond(8, "upscale", small, None, 2, (9, 64, 64))
    assert up.shape == (2, 8, 9, 64, 64) and torch.equal(up[:, 4:7, :, ::2, ::2], torch.from_numpy(to_float(small)))
    assert (G.build_cond(8, "t2v", None, None, 2, (9, 64, 64)) == 0).all()


@pytest.mark.parametrize("mode, kw, word", [("extend", {"known_frames": 0}, "known_frames"),
                                            ("slowmo", {"known_frames": 3}, "slowmo"),
                                            ("teleport", {}, "not supported"), ("v2v", {}, "video")])
def test_bad_modes_are_refused(mode, kw, word):
    clips = None if mode == "v2v" else batch("test", 0, 1)[0]
    with pytest.raises(ConfigError, match=word):
        G.build_cond(8 if mode != "v2v" else 4, mode, clips, kw.get("known_frames"), 1, (17, 64, 64))


def test_paired_noise_does_not_depend_on_the_batch():
    a = G.PairedNoise(range(5, 9), "cpu").like(torch.empty(4, 3, 2, 2))
    b = G.PairedNoise([7], "cpu").like(torch.empty(1, 3, 2, 2))
    torch.testing.assert_close(a[2:3], b, rtol=0, atol=0)


def test_denoiser_calls_split_evenly_below_the_cuda_grid_limit():
    class Den(torch.nn.Module):
        config = type("C", (), {"patch_size": (1, 4, 4), "family": "factorized"})

        def __init__(self):
            super().__init__()
            self.sizes = []

        def forward(self, x, t, ctx, cond=None):
            self.sizes.append(x.shape[0])
            return x * 2

    den = Den()
    x = torch.randn(10, 1, 1, 4, 4)
    out = G.call_denoiser(den, x, torch.zeros(10), torch.zeros(10, 1, 1), torch.zeros(10, 1, 1, 4, 4), limit=4)
    assert den.sizes == [4, 4, 2] and torch.equal(out, 2 * x)


def test_generator_output_checks():
    with pytest.raises(MediaError, match="uint8"):
        G.checked(np.zeros((1, 17, 64, 64, 3), np.float32), 1, (17, 64, 64))
