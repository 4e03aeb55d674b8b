"""Few-step recipes on the Pipeline (vdrt.pipeline.recipe): asked for or named by the model's own config /
card, checked against the model before any weight loads, contradicting settings refused, and at guidance 1
the denoiser is called once per step at batch 1 (no CFG branch)."""
from __future__ import annotations

import json

import pytest
import torch
from pipeline_helpers import CountingEngine

import vdrt
from vdrt.errors import ConfigError
from vdrt.pipeline import sources
from vdrt.samplers import recipes

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(num_frames=5, height=32, width=32, output_type="latent", progress=False)


@pytest.fixture(scope="module")
def wan_pipe():
    return vdrt.Pipeline.from_pretrained("wan-tiny", device="cpu", dtype=torch.float32)


@pytest.fixture
def counted(wan_pipe):
    """The wan-tiny pipeline with a call-counting engine; its recipe and engine restored afterwards."""
    engine, recipe = wan_pipe.engine, wan_pipe.recipe
    wan_pipe.engine = CountingEngine(engine)
    yield wan_pipe
    wan_pipe.engine = engine
    wan_pipe.recipe = recipe


@pytest.mark.parametrize("name", recipes.names())
def test_a_recipe_runs_its_timesteps_without_the_cfg_branch(counted, name):
    r = recipes.get(name)
    counted.use_recipe(name)
    assert (counted.defaults.sampler, counted.defaults.num_steps, counted.defaults.guidance) == ("fewstep",
                                                                                                 r.num_steps, 1.0)
    counted("a fox", negative_prompt="blurry", **SMALL)
    calls = counted.engine.calls
    want = r.sampler(generator=0).timesteps(r.num_steps).tolist()
    assert [c["batch"] for c in calls] == [1] * r.num_steps  # one call per step, never the uncond row
    assert [c["t"][0] for c in calls] == pytest.approx(want, rel=1e-6)


def test_without_a_recipe_cfg_runs_batched(counted):
    counted.use_recipe("none")
    counted("a fox", num_steps=2, **SMALL)
    assert [c["batch"] for c in counted.engine.calls] == [2, 2]  # the default guidance 5: CFG batched


def test_the_recipe_output_equals_its_sampler_run_by_hand(counted):
    """The pipeline's latents equal the one loop run with the recipe's own sampler and guidance 1."""
    from vdrt.pipeline.encoders import encode_prompts
    from vdrt.samplers import CFGModel, sample

    counted.use_recipe("wan-4step-distill")
    got = counted("a fox", seed=3, **SMALL).frames
    r = recipes.get("wan-4step-distill")
    pos, neg = encode_prompts(counted.text_encoder, counted.config.text_dim, "a fox", "", None, None, False)
    x = torch.randn((1, 16, 2, 4, 4), generator=torch.Generator().manual_seed(3))
    model = CFGModel(counted.engine, pos, neg, r.guidance, device="cpu", dtype=torch.float32)
    want = sample(model, x, r.sampler(generator=3), r.num_steps, progress=False)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("kw, match", [
    (dict(num_steps=3), r"runs 4 steps .*num_steps=3 contradicts it"),
    (dict(num_inference_steps=8), r"runs 4 steps .*num_steps=8 contradicts it"),
    (dict(guidance_scale=5.0), r"distilled for guidance 1; guidance_scale=5.0 contradicts it"),
    (dict(sampler="unipc"), r"samples with fewstep; sampler='unipc' contradicts it"),
    (dict(shift=3.0), r"shifts its timesteps by 5; shift=3.0 contradicts it"),
])
def test_contradicting_settings_are_refused(counted, kw, match):
    counted.use_recipe("wan-4step-distill")
    with pytest.raises(ConfigError, match=match):
        counted("a fox", **{**SMALL, **kw})
    assert counted.engine.calls == []
    counted("a fox", num_steps=4, guidance_scale=1.0, sampler="fewstep", shift=5.0, **SMALL)  # agreeing: fine


def test_a_recipe_that_does_not_fit_is_refused_before_loading(monkeypatch):
    def never(*a, **k):
        raise AssertionError("weights were loaded before the recipe was checked")

    monkeypatch.setattr(sources, "load_denoiser_for", never)
    monkeypatch.setattr(sources, "_from_card", never)
    with pytest.raises(ConfigError, match=r"'fastwan-3step' does not fit this model: .*text-to-video only.*"
                                          r"Recipes that fit it: wan-4step-distill"):
        vdrt.Pipeline.from_pretrained("wan-tiny-i2v", recipe="fastwan-3step")
    with pytest.raises(ConfigError, match="this is a factorized model. Recipes that fit it: none"):
        vdrt.Pipeline.from_pretrained("vdrt-tiny", recipe="wan-4step-distill")
    with pytest.raises(ConfigError, match="unknown recipe 'wan-1step'; known recipes: fastwan-3step, wan-4step"):
        vdrt.Pipeline.from_pretrained("wan-tiny", recipe="wan-1step")


# ---------------------------------------------------------------- a recipe the model's own files name


@pytest.fixture(scope="module")
def distilled_dir(tmp_path_factory):
    """A diffusers-format wan-tiny pipeline whose model_index.json names a recipe (the documented convention;
    diffusers' own loader warns about the key and ignores it)."""
    from diffusers import WanTransformer3DModel

    from vdrt.models import config_from_name
    from vdrt.models.wan_convert import config_to_diffusers

    root = tmp_path_factory.mktemp("distilled")
    torch.manual_seed(0)
    WanTransformer3DModel(**config_to_diffusers(config_from_name("wan-tiny"))).save_pretrained(root / "transformer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "recipe": "fastwan-3step",
                                                       "transformer": ["diffusers", "WanTransformer3DModel"]}))
    return root


def test_the_recipe_a_diffusers_config_names_is_used(distilled_dir):
    assert sources.describe(distilled_dir).defaults.recipe == "fastwan-3step"
    pipe = vdrt.Pipeline.from_pretrained(distilled_dir, device="cpu")
    assert pipe.recipe.name == "fastwan-3step"
    pipe.engine = CountingEngine(pipe.engine)
    g = torch.Generator().manual_seed(0)
    embeds = dict(prompt_embeds=torch.randn(1, 7, 64, generator=g), negative_prompt_embeds=torch.randn(1, 7, 64,
                                                                                                     generator=g))
    pipe(**embeds, **SMALL)  # no text encoder in this folder: embeddings given
    assert [c["batch"] for c in pipe.engine.calls] == [1, 1, 1]
    with pytest.raises(ConfigError, match=r"runs 3 steps.*names this recipe itself; recipe='none' / --recipe none"):
        pipe(num_steps=8, **embeds, **SMALL)
    pipe.use_recipe("none")
    pipe.engine.calls.clear()
    pipe(num_steps=2, **embeds, **SMALL)
    assert [c["batch"] for c in pipe.engine.calls] == [2, 2]
    assert vdrt.Pipeline.from_pretrained(distilled_dir, recipe="wan-4step-distill").recipe.name == "wan-4step-distill"


def test_a_bad_recipe_key_is_refused(tmp_path, distilled_dir):
    import shutil

    shutil.copytree(distilled_dir / "transformer", tmp_path / "transformer")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "recipe": 4}))
    with pytest.raises(ConfigError, match=r"model_index.json: \"recipe\" must name a few-step recipe \(a string\), "
                                          r"got 4"):
        sources.describe(tmp_path)


def test_the_recipe_the_transformers_own_config_names_is_used(tmp_path, distilled_dir):
    """A distilled transformer folder alone (no model_index.json): its config.json's "recipe" is used, and vdrt's
    diffusers config check takes the key (it is not architecture)."""
    import shutil

    shutil.copytree(distilled_dir / "transformer", tmp_path / "t")
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    (tmp_path / "t" / "config.json").write_text(json.dumps({**cfg, "recipe": "wan-4step-distill"}))
    assert sources.describe(tmp_path / "t").defaults.recipe == "wan-4step-distill"
    assert vdrt.Pipeline.from_pretrained(tmp_path / "t", device="cpu").recipe.name == "wan-4step-distill"


def test_two_configs_naming_different_recipes_are_refused(tmp_path, distilled_dir):
    import shutil

    shutil.copytree(distilled_dir, tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "transformer" / "config.json").read_text())
    (tmp_path / "p" / "transformer" / "config.json").write_text(json.dumps({**cfg, "recipe": "wan-4step-distill"}))
    with pytest.raises(ConfigError, match=r"name different few-step recipes \(model_index.json: fastwan-3step, "
                                          r"config.json: wan-4step-distill\); keep one"):
        sources.describe(tmp_path / "p")


def test_a_card_names_its_recipe_in_its_defaults(tmp_path, monkeypatch):
    card = json.loads((sources.Path(vdrt.__file__).parent / "weights" / "vdrt-tiny.json").read_text())
    card["defaults"]["recipe"] = "wan-4step-distill"
    (tmp_path / "tiny-with-recipe.json").write_text(json.dumps({**card, "name": "tiny-with-recipe"}))
    monkeypatch.setenv("VDRT_WEIGHTS_DIR", str(tmp_path))
    info = sources.describe("tiny-with-recipe")
    assert info.defaults.recipe == "wan-4step-distill"
    with pytest.raises(ConfigError, match="'wan-4step-distill' does not fit this model"):  # it names one for wan
        vdrt.Pipeline.from_pretrained("tiny-with-recipe")
