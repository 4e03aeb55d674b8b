"""vdrt.samplers.recipes: the numbers match the schedulers they cite, a recipe fits only its models,
and at guidance 1 the sampling loop never builds the unconditional branch."""
from __future__ import annotations

import pytest
import torch

import vdrt.samplers as S
from vdrt.errors import ConfigError
from vdrt.models import config_from_name
from vdrt.samplers import recipes
from vdrt.samplers.guidance import CFGModel


def test_names_and_unknown_name():
    assert recipes.names() == ["fastwan-3step", "wan-4step-distill"]
    with pytest.raises(ConfigError, match="unknown recipe 'wan-2step'; known recipes: fastwan-3step, wan-4step-"):
        recipes.get("wan-2step")


def lightx2v_schedule(step_list, shift):
    """LightX2V's WanStepDistillScheduler.set_denoising_timesteps, line by line (float32 torch)."""
    sigmas = torch.linspace(1.0, 0.0, 1000 + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    index = [1000 - x for x in step_list]
    return sigmas[index], (sigmas * 1000)[index]


def test_wan_4step_distill_matches_lightx2v():
    r = recipes.get("wan-4step-distill")
    sampler = r.sampler(generator=0)
    ts = sampler.timesteps(r.num_steps)
    their_sigmas, their_ts = lightx2v_schedule([1000, 750, 500, 250], shift=5.0)
    torch.testing.assert_close(ts, their_ts, rtol=1e-6, atol=0)
    torch.testing.assert_close(sampler.sigmas[:-1], their_sigmas, rtol=1e-6, atol=0)
    assert sampler.sigmas[-1] == 0 and (r.shift, r.guidance_scale, r.num_steps) == (5.0, 1.0, 4)


def test_fastwan_3step_matches_fastvideo_dmd_lookup():
    """FastVideo's DmdStrategy feeds the listed timesteps to the model as they are, and takes each sigma
    from FlowMatchEulerDiscreteScheduler(shift=8)'s grid at the nearest timestep (pred_noise_to_pred_video)."""
    diffusers = pytest.importorskip("diffusers")
    grid = diffusers.FlowMatchEulerDiscreteScheduler(shift=8.0)
    r = recipes.get("fastwan-3step")
    sampler = r.sampler(generator=0)
    ts = sampler.timesteps(r.num_steps)
    assert ts.tolist() == [1000.0, 757.0, 522.0]
    nearest = (grid.timesteps[None, :] - ts[:, None]).abs().argmin(dim=1)
    their_sigmas = grid.sigmas[nearest]
    torch.testing.assert_close(sampler.sigmas[:-1], their_sigmas, rtol=0, atol=5e-4)  # their grid spacing


@pytest.mark.parametrize("name", recipes.names())
def test_the_recipe_sampler_is_exact_for_a_perfect_predictor(name):
    r = recipes.get(name)
    x0 = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sampler = r.sampler(generator=3)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = S.sample(lambda x, t, i: (x - x0) / sampler.sigma(i), noise, sampler, r.num_steps, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-12, rtol=0)


class Counting:
    """A denoiser stand-in that records the batch of every call."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, t, ctx):
        self.batches.append(x.shape[0])
        return 0.1 * x + t[:, None, None, None, None] / 1000 + ctx.mean()


@pytest.mark.parametrize("name", recipes.names())
def test_guidance_one_never_computes_the_uncond_branch(name):
    """The model function the Pipeline runs (CFGModel): one denoiser call of batch B per step."""
    r = recipes.get(name)
    den, g = Counting(), r.guidance
    x, ctx, neg = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    S.sample(CFGModel(den, ctx, neg, g), x, r.sampler(generator=0), r.num_steps, progress=False)
    assert not g.enabled and den.batches == [2] * r.num_steps


def test_recipes_fit_their_models():
    t2v, i2v, other = (config_from_name(n) for n in ("wan-tiny", "wan-tiny-i2v", "factorized-tiny"))
    assert recipes.fitting(t2v) == ["fastwan-3step", "wan-4step-distill"]
    assert recipes.fitting(i2v) == ["wan-4step-distill"]
    assert recipes.for_model("wan-4step-distill", i2v).name == "wan-4step-distill"
    with pytest.raises(ConfigError, match="'fastwan-3step' does not fit this model: .*text-to-video only.*20 "
                                          "conditioning channels.*Recipes that fit it: wan-4step-distill"):
        recipes.for_model("fastwan-3step", i2v)
    with pytest.raises(ConfigError, match="for wan models .* this is a factorized model. Recipes that fit it: none"):
        recipes.for_model("wan-4step-distill", other)


def test_a_recipe_checks_a_module_too():
    import vdrt

    den = vdrt.load_denoiser("factorized-tiny")
    with pytest.raises(ConfigError, match="does not fit this model"):
        recipes.get("fastwan-3step").check(den)


def test_contradicting_settings_are_refused():
    r = recipes.get("wan-4step-distill")
    r.check_overrides(num_steps=4, guidance_scale=1.0)
    r.check_overrides()
    with pytest.raises(ConfigError, match="runs 4 steps .*num_steps=30 contradicts it"):
        r.check_overrides(num_steps=30)
    with pytest.raises(ConfigError, match="distilled for guidance 1; guidance_scale=5.0 contradicts it"):
        r.check_overrides(guidance_scale=5.0)
    r.check_overrides(sampler="fewstep", shift=5.0)
    with pytest.raises(ConfigError, match="samples with fewstep; sampler='unipc' contradicts it"):
        r.check_overrides(sampler="unipc")
    with pytest.raises(ConfigError, match="shifts its timesteps by 5; shift=8.0 contradicts it"):
        r.check_overrides(shift=8.0)
