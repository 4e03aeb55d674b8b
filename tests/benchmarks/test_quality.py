"""benchmarks/quality.py: per-model steps (`NAME@STEPS`) and saved results compared across runs."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality.py"
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not in this tree")]


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield load_script("quality.py", "quality_bench")
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    from vdrt.export.tiny import arch, common
    from vdrt.export.tiny.quality.cards import build_models
    from vdrt.export.tiny.trainer import named_parameters

    out = tmp_path_factory.mktemp("cards")
    config, text = arch.sections("wan", {"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64},
                                 {"dim": 32, "layers": 1, "heads": 2})
    den, txt = build_models(config, text)
    torch.nn.init.normal_(den.head.head.weight, std=0.05)
    defaults = {"num_frames": 9, "height": 64, "width": 64, "num_steps": 4, "sampler": "euler", "guidance": 1.0,
                "shift": 1.0, "fps": 8}
    common.write_card(out, "q-tiny", named_parameters(den, txt.encoder), config, text, defaults, {})
    return out


def test_saved_results_compare_with_a_later_run(quality, cards, tmp_path):
    base = ["--weights-dir", str(cards), "--clips", "2", "--frames", "9", "--tasks", "t2v,extend", "--device", "cpu"]
    assert quality.main([*base, "--model", "q-tiny@1", "--save-results", str(tmp_path / "r")]) == 0
    saved = sorted((tmp_path / "r").glob("*.npz"))
    assert [p.name for p in saved] == ["q-tiny_euler-1_shift1.npz"]
    again = quality.load_result(saved[0])
    assert again["name"] == "q-tiny euler-1 shift1" and again["outputs"]["t2v"].shape == (2, 9, 64, 64, 3)
    out = tmp_path / "q.json"
    assert quality.main([*base, "--results", str(saved[0]), "--model", "q-tiny@2", "--compare", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    cmp = [r for r in rows if r["bench"] == "quality-compare"]
    assert [r["impl"] for r in rows if r["bench"] == "quality"] == ["q-tiny euler-1 shift1", "q-tiny euler-2 shift1"]
    assert len(cmp) == 1 and cmp[0]["reference"] == "q-tiny euler-1 shift1"
    assert cmp[0]["candidate"] == "q-tiny euler-2 shift1"
    assert np.isfinite(cmp[0]["fidelity"]["t2v"]["psnr"])  # 1 vs 2 Euler steps: different clips, same noise


def test_forced_ops_variant_is_compared_to_the_first_model(quality, cards, tmp_path):
    out = tmp_path / "q.json"
    argv = ["--weights-dir", str(cards), "--clips", "2", "--frames", "9", "--tasks", "t2v", "--device", "cpu",
            "--model", "q-tiny@1", "--ops", "linear=vdrt-fp8", "--out", str(out)]
    assert quality.main(argv) == 0
    cmp = [r for r in json.loads(out.read_text()) if r["bench"] == "quality-compare"]
    assert [r["candidate"] for r in cmp] == ["q-tiny@1 linear=vdrt-fp8"]
    psnr = cmp[0]["fidelity"]["t2v"]["psnr"]
    assert 15 < psnr < 90  # fp8 emulated: close to the reference, not equal to it
    with pytest.raises(Exception, match="--ops 'linear=nope'"):
        quality.main([*argv[:-4], "--ops", "linear=nope"])


def test_cache_and_sparse_variants_are_compared_to_the_first_model(quality, cards, tmp_path):
    out = tmp_path / "q.json"
    argv = ["--weights-dir", str(cards), "--clips", "2", "--frames", "9", "--tasks", "t2v", "--device", "cpu",
            "--model", "q-tiny@4", "--cache", "fbcache:1", "--cache", "fbcache:0",
            "--ops", "attention=vdrt-sparse,sparse=1x1x1", "--out", str(out)]
    assert quality.main(argv) == 0
    cmp = {r["candidate"]: r for r in json.loads(out.read_text()) if r["bench"] == "quality-compare"}
    assert set(cmp) == {"q-tiny@4 cache fbcache:1", "q-tiny@4 cache fbcache:0",
                        "q-tiny@4 attention=vdrt-sparse,sparse=1x1x1"}
    assert cmp["q-tiny@4 cache fbcache:0"]["skipped"] == 0.0  # threshold 0 never skips: the reference exactly
    assert cmp["q-tiny@4 cache fbcache:0"]["fidelity"]["t2v"]["psnr"] == "inf"
    assert 0.3 < cmp["q-tiny@4 cache fbcache:1"]["skipped"] < 1  # threshold 1 skips all but the first steps
    assert np.isfinite(cmp["q-tiny@4 attention=vdrt-sparse,sparse=1x1x1"]["fidelity"]["t2v"]["psnr"])
    with pytest.raises(Exception, match="sparse='0'"):
        quality.parse_ops("attention=vdrt-sparse,sparse=0")
