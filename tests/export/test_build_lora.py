"""`vdrt build --lora` / `--recipe`: the engine is built from fused weights, its manifest records each LoRA's
file, sha256 and scale (and the recipe), and `vdrt run ENGINE --lora` accepts exactly those.

One wan-tiny ONNX build (about 12 s on 2 cores) serves the module.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from export_helpers import random_call, rel_err

import vdrt
from tests.models.test_lora import random_spec, save
from vdrt.cli import main
from vdrt.errors import ConfigError
from vdrt.pipeline import sources

pytestmark = pytest.mark.usefixtures("one_thread")
SIZES = ["--frames", "1:5:9", "--height", "16:32:32", "--width", "16:32:32", "--batch", "1:1:2"]
RUN = ["--frames", "5", "--height", "32", "--width", "32", "--no-progress", "--device", "cpu"]  # the recipe: 4 steps


@pytest.fixture(scope="module")
def lora_engine(build_cache, tmp_path_factory):
    """(engine dir, the LoRA file it was built with at scale 0.5)."""
    tmp = tmp_path_factory.mktemp("lora-engine")
    path = save(tmp, random_spec(seed=51), "original", "distill")
    out = tmp / "engine"
    assert main(["build", "wan-tiny", "--backend", "onnx", "--precision", "fp32", *SIZES, "--device", "cpu",
                 "--out", str(out), "--lora", f"{path}:0.5", "--recipe", "wan-4step-distill"]) == 0
    return out, path


def test_the_manifest_records_each_lora_and_the_recipe(lora_engine):
    out, path = lora_engine
    options = json.loads((out / "manifest.json").read_text())["build"]["options"]
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert options["loras"] == [dict(name="distill-original", file="distill-original.safetensors", sha256=sha,
                                     scale=0.5, fused=True)]
    assert options["recipe"] == "wan-4step-distill"
    assert sources.describe(out).defaults.recipe == "wan-4step-distill"  # `vdrt run` uses it by default


def test_the_engine_runs_the_fused_weights(lora_engine, record_property):
    out, path = lora_engine
    engine = vdrt.load_engine(out, device="cpu")
    eager = vdrt.load_denoiser("wan-tiny", lora=[(path, 0.5)])
    x = random_call(eager.config, 2, 2, 4, 4, 16, seed=3)
    with torch.no_grad():
        got, want, base = engine(*x), eager(*x), vdrt.load_denoiser("wan-tiny")(*x)
    err = rel_err(got, want)
    record_property("rel_err_onnx_lora_engine_vs_eager", err)
    assert err <= 1e-5 and rel_err(base, want) > 0.05


def test_run_accepts_exactly_the_build_loras(lora_engine, tmp_path, capsys):
    out, path = lora_engine
    other = save(tmp_path, random_spec(seed=52), "original", "other")
    gif = tmp_path / "x.gif"
    assert main(["run", str(out), "x", "-o", str(gif), *RUN, "--lora", f"{path}:0.5"]) == 0 and gif.is_file()
    capsys.readouterr()
    for lora in (f"{path}:0.7", other, f"{path}:0.5 {other}"):
        flags = [a for p in lora.split() for a in ("--lora", p)]
        assert main(["run", str(out), "x", "-o", str(tmp_path / "y.gif"), *RUN, *flags]) == 2
        err = capsys.readouterr().err
        assert "vdrt run: error: this engine was built with LoRAs [distill-original.safetensors:0.5]; other LoRAs " \
               "or scales need a rebuild (vdrt build --lora PATH[:SCALE])" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "y.gif").exists()


def test_hot_swapping_is_refused_on_the_compiled_engine(lora_engine):
    out, path = lora_engine
    pipe = vdrt.Pipeline.from_pretrained(out, device="cpu")
    with pytest.raises(ConfigError, match=r"load_lora_weights: this pipeline runs a compiled onnx engine, whose "
                                          r"weights are baked in; LoRAs must be fused at build time"):
        pipe.load_lora_weights(path)
    with pytest.raises(ConfigError, match="built with LoRAs"):
        vdrt.Pipeline.from_pretrained(out, lora=[(path, 1.0)])


def test_run_with_a_lora_on_an_engine_built_without(engines, tmp_path, capsys):
    _, _, out = engines("factorized-tiny", "aoti")
    path = save(tmp_path, random_spec(seed=53, extra=False), "original")
    assert main(["run", str(out), "x", "-o", str(tmp_path / "x.gif"), *RUN, "--lora", path]) == 2
    err = capsys.readouterr().err
    assert "this engine was built with LoRAs [none]; other LoRAs or scales need a rebuild" in err


@pytest.mark.parametrize("flags, match", [
    (["--lora", "{tmp}/missing.safetensors"], "LoRA file {tmp}/missing.safetensors does not exist"),
    (["--lora", "{good}:nan"], "the scale must be a finite number, got nan"),
    (["--lora", "{pickle}"], "style.pt is a pickle checkpoint"),
    (["--recipe", "fastwan-3step", "--model-arg", "wan-tiny-i2v"], "'fastwan-3step' does not fit this model"),
    (["--recipe", "wan-4step-distill", "--model-arg", "factorized-tiny"], "this is a factorized model"),
])
def test_build_bad_lora_or_recipe_is_one_line_before_loading(flags, match, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sources, "load_denoiser_for", lambda *a, **k: pytest.fail("loaded before the flags' check"))
    good = save(tmp_path, random_spec(seed=54, extra=False), "original")
    (tmp_path / "style.pt").write_bytes(b"never unpickled")
    fill = dict(tmp=tmp_path, good=good, pickle=tmp_path / "style.pt")
    flags = [f.format(**fill) for f in flags]
    model = flags.pop(flags.index("--model-arg") + 1) if "--model-arg" in flags else "wan-tiny"
    flags = [f for f in flags if f != "--model-arg"]
    code = main(["build", model, "--backend", "onnx", "--precision", "fp32", *SIZES, "--out", str(tmp_path / "e"),
                 *flags])
    err = capsys.readouterr().err
    assert code == 2 and match.format(**fill) in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("vdrt build: error:")]) == 1
    assert not (tmp_path / "e").exists()
