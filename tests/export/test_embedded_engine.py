"""An engine built from the embedded vdrt-tiny keeps its text encoder and defaults, and matches eager."""
from __future__ import annotations

import json

import numpy as np
import pytest

import vdrt
from vdrt.cli import main


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    out = tmp_path_factory.mktemp("eng") / "vdrt-tiny-onnx"
    code = main(["build", "vdrt-tiny", "--backend", "onnx", "--precision", "fp32", "--frames", "17:17:17",
                 "--height", "64:64:64", "--width", "64:64:64", "--batch", "1:1:1", "--device", "cpu",
                 "--no-cache", "--out", str(out)])
    assert code == 0
    return out


def test_manifest_names_the_embedded_source(tiny_engine):
    m = json.loads((tiny_engine / "manifest.json").read_text())
    assert m["build"]["options"]["source"] == "vdrt-tiny"


def test_engine_pipeline_uses_the_models_text_encoder_and_matches_eager(tiny_engine):
    from vdrt.text.tiny_encoder import TinyTextConditioner

    eng = vdrt.Pipeline.from_pretrained(tiny_engine, device="cpu")
    eager = vdrt.Pipeline.from_pretrained("vdrt-tiny", device="cpu")
    assert isinstance(eng.text_encoder, TinyTextConditioner)
    assert eng.defaults == eager.defaults and eng.defaults.sampler == "fewstep"
    a = eng("a red circle bouncing", seed=3, progress=False).frames.astype(int)
    b = eager("a red circle bouncing", seed=3, progress=False).frames.astype(int)
    assert np.abs(a - b).mean() < 1.0  # fp32 engine vs eager: rounding only
