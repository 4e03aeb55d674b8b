"""The quality oracle end to end, its baselines, and the batched card generator's inputs."""
import numpy as np
import pytest
import torch

from vdrt.export.tiny.data.procedural import batch, to_float
from vdrt.errors import MediaError
from vdrt.export.tiny.quality import oracle

TINY = ({"dim": 32, "num_heads": 2, "num_layers": 1}, {"dim": 32, "layers": 1, "heads": 2})
KEYS = {"clips", "forecast_psnr", "forecast_ssim", "forecast_centroid_px", "t2v_accuracy", "t2v_clip_accuracy",
        "t2v_colour", "t2v_shape", "t2v_size", "t2v_motion", "area_cv", "colour_std", "detected", "ms_per_clip",
        "ms_per_clip_extend", "ms_per_clip_t2v"}


pytestmark = pytest.mark.usefixtures("one_thread")


class Recording(torch.nn.Module):
    """Wraps a denoiser, keeping the inputs of every call."""

    def __init__(self, den):
        super().__init__()
        self.den, self.calls = den, []

    def forward(self, x, t, ctx, cond=None):
        self.calls.append({"x": x.clone(), "t": t.clone(), "ctx": ctx.clone(), "cond": cond.clone()})
        return self.den(x, t, ctx, cond=cond)


def tiny_generator(**settings):
    from vdrt.export.tiny.common import sections

    den, text = oracle.build_models(*sections(*TINY))
    s = oracle.SampleSettings.from_defaults({"sampler": "euler", "num_steps": 2, "shift": 3.0}, **settings)
    return oracle.CardGenerator(Recording(den), text, s, device="cpu", batch_size=2, name="random")


def test_evaluate_runs_end_to_end_with_a_random_model():
    gen = tiny_generator()
    r = oracle.evaluate(gen, n_clips=2, seed=0)
    assert set(r) == KEYS and r["clips"] == 2
    assert 0 < r["forecast_psnr"] < 30 and -1 <= r["forecast_ssim"] < 0.9  # random weights: far from the truth
    assert r["forecast_centroid_px"] is not None and r["forecast_centroid_px"] > 0
    for k in ("t2v_accuracy", "t2v_clip_accuracy", "detected"):
        assert 0 <= r[k] <= 1
    assert r["ms_per_clip"] > 0 and len(gen.denoiser.calls) == 2 * 2  # 2 tasks x 2 steps, 2 clips per call


def test_reference_and_repeat_baselines_bracket_the_metrics():
    n = 4
    truth = oracle.evaluate(oracle.reference_generator(n), n_clips=n)
    assert truth["forecast_psnr"] == 100.0 and truth["forecast_ssim"] == pytest.approx(1.0)
    assert truth["forecast_centroid_px"] == 0.0 and truth["t2v_accuracy"] == 1.0 and truth["detected"] == 1.0
    assert truth["area_cv"] < 0.1 and truth["colour_std"] == 0.0
    last = oracle.evaluate(oracle.repeat_last_generator, n_clips=n)
    assert 8 < last["forecast_psnr"] < 40 and last["forecast_centroid_px"] > 3
    assert last["t2v_accuracy"] == 0.0 and last["detected"] == 0.0 and last["area_cv"] is None


def test_generator_output_is_checked():
    with pytest.raises(MediaError, match="uint8"):
        oracle.evaluate(lambda prompts, mode, video=None, known_frames=None: np.zeros((2, 17, 64, 64, 3)), n_clips=2)


def test_card_generator_conditions_like_the_pipeline():
    gen = tiny_generator(guidance=3.0)
    clips, captions = batch("test", 0, 2)
    out = gen(captions, "extend", video=clips, known_frames=4, seed=5)
    assert out.shape == (2, 17, 64, 64, 3) and out.dtype == np.uint8
    call = gen.denoiser.calls[0]
    assert call["x"].shape[0] == 4 and torch.equal(call["x"][:2], call["x"][2:])  # CFG batched: cond, uncond
    assert (call["ctx"][2:] == 0).all() and call["ctx"][:2].abs().sum() > 0  # uncond context = zeros
    keep, known = call["cond"][:2, 3:], call["cond"][:2, :3]  # [known * keep (3), keep (1)]
    assert (keep[:, :, :4] == 1).all() and (keep[:, :, 4:] == 0).all()
    torch.testing.assert_close(known[:, :, :4], torch.from_numpy(to_float(clips))[:, :, :4], rtol=0, atol=0)
    assert (known[:, :, 4:] == 0).all() and torch.equal(call["cond"][:2], call["cond"][2:])
    assert np.array_equal(gen(captions, "extend", video=clips, known_frames=4, seed=5), out)
    assert not np.array_equal(gen(captions, "extend", video=clips, known_frames=4, seed=6), out)
    gen.denoiser.calls.clear()
    gen(captions, "t2v")
    assert all((c["cond"] == 0).all() for c in gen.denoiser.calls)


def test_sample_settings_follow_the_card():
    student = {"num_steps": 4, "sampler": "fewstep", "sampler_timesteps": [1000, 750, 500, 250], "guidance": 1.0}
    s = oracle.SampleSettings.from_defaults(student)
    assert s.timesteps == (1000, 750, 500, 250) and s.describe() == "fewstep-4"
    assert s.sampler_obj(0).timesteps(4).tolist() == [1000, 750, 500, 250]
    assert oracle.SampleSettings.from_defaults(student, num_steps=2).timesteps == ()  # they fit 4 steps only
    teacher = oracle.SampleSettings.from_defaults({"num_steps": 50, "sampler": "unipc", "guidance": 4.0, "shift": 3.0})
    assert teacher.describe() == "unipc-50 g4 shift3"


def test_denoiser_calls_split_evenly_below_the_cuda_grid_limit():
    gen = tiny_generator()
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(5, 3, 2, 16, 16, generator=g), torch.randn(5, 4, 2, 16, 16, generator=g)
    t, ctx = torch.rand(5, generator=g) * 1000, torch.randn(5, 16, 32, generator=g)
    with torch.no_grad():
        whole = oracle.call_denoiser(gen.denoiser, x, t, ctx, cond)
        parts = oracle.call_denoiser(gen.denoiser, x, t, ctx, cond, limit=2)
    assert [c["x"].shape[0] for c in gen.denoiser.calls] == [5, 2, 2, 1]
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
