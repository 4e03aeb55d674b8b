"""`--lora PATH[:SCALE]` and `--recipe NAME` on `vdrt generate` (and in the TOML run config): the fused
denoiser equals `vdrt.load_denoiser(lora=)`, bad input is one line and exit 2 before anything loads."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vdrt
from tests.models.test_lora import base_model, forward, random_spec, save, write
from tests.models.test_wan import rel_err
from vdrt.cli import main, options
from vdrt.pipeline import sources

pytestmark = pytest.mark.usefixtures("one_thread")
WAN = ["--model", "wan-tiny", "--frames", "5", "--height", "32", "--width", "32", "--no-progress"]


@pytest.fixture
def spy(monkeypatch):
    """The pipeline and the Pipeline.from_pretrained arguments each `vdrt generate` builds."""
    seen = {}

    def build(opts):
        seen["pipe"] = real(opts)
        return seen["pipe"]

    real = options.build_pipeline
    monkeypatch.setattr(options, "build_pipeline", build)
    return seen


@pytest.fixture
def no_loading(monkeypatch):
    def never(*a, **k):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(sources, "load_denoiser_for", never)
    monkeypatch.setattr(sources, "_from_card", never)


def test_generate_with_loras_equals_load_denoiser_with_them(tmp_path, spy, capsys):
    a, b = save(tmp_path, random_spec(seed=41), "original", "a"), save(tmp_path, random_spec(seed=42), "kohya", "b")
    out = tmp_path / "clip.gif"
    assert main(["generate", "a fox", "-o", str(out), *WAN, "--steps", "2", "--lora", f"{a}:0.7", "--lora", b]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    module = spy["pipe"].engine.module
    want = vdrt.load_denoiser("wan-tiny", lora=[(a, 0.7), (b, 1.0)])
    assert torch.equal(forward(module), forward(want))  # the same fused weights, bit for bit
    assert rel_err(forward(module), forward(base_model())) > 0.05  # and the LoRAs are really in
    assert [(r["name"], r["scale"], r["fused"]) for r in vdrt.models.lora.list_loras(module)] == [
        ("a-original", 0.7, True), ("b-kohya", 1.0, True)]


def test_recipe_flag_sets_the_sampler_and_drops_cfg(tmp_path, spy):
    assert main(["generate", "a fox", "-o", str(tmp_path / "o.gif"), *WAN, "--recipe", "wan-4step-distill"]) == 0
    pipe = spy["pipe"]
    assert pipe.recipe.name == "wan-4step-distill" and pipe.defaults.guidance == 1.0


def _lora_for_another_model(tmp_path):
    bad = write(random_spec(seed=43), "original")
    bad["diffusion_model.blocks.0.ffn.0.lora_up.weight"] = torch.randn(192, 4)
    path = tmp_path / "other.safetensors"
    save_file(bad, str(path))
    return str(path)


@pytest.mark.parametrize("flags, match", [
    (["--lora", "{tmp}/missing.safetensors"], "LoRA file {tmp}/missing.safetensors does not exist"),
    (["--lora", "{good}:nan"], "the scale must be a finite number, got nan"),
    (["--lora", "{good}:inf"], "the scale must be a finite number, got inf"),
    (["--lora", "{good}:big"], "the scale 'big' is not a number; use PATH[:SCALE]"),
    (["--lora", "{pickle}"], "style.pt is a pickle checkpoint; vdrt does not unpickle files by default"),
    (["--recipe", "fastwan-3step", "--model", "wan-tiny-i2v"], "recipe 'fastwan-3step' does not fit this model: it "
                                                               "was distilled for text-to-video only"),
    (["--recipe", "wan-4step-distill", "--model", "factorized-tiny"], "this is a factorized model. Recipes that fit "
                                                                      "it: none"),
    (["--recipe", "wan-2step"], "unknown recipe 'wan-2step'; known recipes: fastwan-3step, wan-4step-distill"),
    (["--recipe", "wan-4step-distill", "--steps", "8"], "runs 4 steps (timesteps [1000.0, 750.0, 500.0, 250.0]); "
                                                        "num_steps=8 contradicts it"),
    (["--recipe", "wan-4step-distill", "--guidance", "5"], "distilled for guidance 1; guidance_scale=5.0"),
    (["--recipe", "wan-4step-distill", "--sampler", "unipc"], "samples with fewstep; sampler='unipc'"),
])
def test_bad_lora_and_recipe_flags_are_one_line_exit_2_before_loading(flags, match, tmp_path, capsys, no_loading):
    good = save(tmp_path, random_spec(seed=44, extra=False), "original")
    (tmp_path / "style.pt").write_bytes(b"never unpickled")
    fill = dict(tmp=tmp_path, good=good, pickle=tmp_path / "style.pt")
    argv = ["generate", "x", "-o", str(tmp_path / "o.gif"), *WAN, *[f.format(**fill) for f in flags]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match.format(**fill) in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("vdrt generate: error:")]) == 1
    assert not (tmp_path / "o.gif").exists()


def test_a_lora_for_another_model_names_the_key_and_both_shapes(tmp_path, capsys):
    argv = ["generate", "x", "-o", str(tmp_path / "o.gif"), *WAN, "--lora", _lora_for_another_model(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "blocks.0.ffn.0.lora_up.weight gives a delta of shape (192, 128) but the model's parameter is " \
           "(256, 128)" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.gif").exists()


def test_toml_lora_and_recipe_with_the_command_line_replacing_the_list(tmp_path):
    from vdrt.cli.runconfig import merge_toml

    cfg = tmp_path / "run.toml"
    cfg.write_text('[generate]\nlora = ["a.safetensors:0.5", "b.safetensors"]\nrecipe = "wan-4step-distill"\n')
    assert merge_toml({"lora": None, "recipe": None}, cfg) == {"lora": ["a.safetensors:0.5", "b.safetensors"],
                                                              "recipe": "wan-4step-distill"}
    assert merge_toml({"lora": ["c.safetensors"], "recipe": None}, cfg)["lora"] == ["c.safetensors"]
    cfg.write_text('lora = "a.safetensors:0.5"\n')
    assert merge_toml({"lora": None}, cfg)["lora"] == ["a.safetensors:0.5"]


@pytest.mark.parametrize("text, match", [
    ("lora = [0.5]\n", "lora.0 = 0.5: input should be a valid string"),
    ("recipe = 4\n", "recipe = 4: input should be a valid string"),
])
def test_bad_toml_lora_and_recipe(text, match, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    assert main(["generate", "x", "--config", str(cfg), *WAN, "-o", str(tmp_path / "o.gif")]) == 2
    assert match in capsys.readouterr().err


def test_toml_loras_reach_the_pipeline(tmp_path, spy):
    path = save(tmp_path, random_spec(seed=45, extra=False), "original")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'lora = ["{path}:0.25"]\n')
    assert main(["generate", "x", "--config", str(cfg), *WAN, "--steps", "1", "-o", str(tmp_path / "o.gif")]) == 0
    assert [r["scale"] for r in vdrt.models.lora.list_loras(spy["pipe"].engine.module)] == [0.25]


def test_multi_process_children_get_the_same_loras_and_recipe():
    from vdrt.cli import parallel as cli_parallel
    from vdrt.cli import parser

    def opts(argv):
        return {k: v for k, v in vars(parser().parse_args(argv)).items() if k != "func"}

    given = opts(["generate", "a fox", "--gpus", "2", "--lora", "a.safetensors:0.5", "--lora", "b.safetensors",
                  "--recipe", "wan-4step-distill"])
    child = cli_parallel.child_argv(given)
    assert opts(child) == given and child.count("--lora") == 2
