"""Integrity of real AOTI engines (the session's factorized-tiny build, no extra compile): the manifest is checked
against what the package was compiled for, so the hostile cases that used to segfault or return wrong shapes
(weights.safetensors dropped from the list, backend changed, frames widened) are refused before loading."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from export_helpers import random_call, rel_err

import vdrt
from vdrt.cli import main
from vdrt.engines import integrity
from vdrt.engines import manifest as mf
from vdrt.errors import EngineError


@pytest.fixture
def aoti(engines, tmp_path):
    """A private copy of the session's factorized-tiny AOTI engine, and its eager module."""
    den, _, out = engines("factorized-tiny", "aoti")
    d = tmp_path / "e"
    shutil.copytree(out, d)
    return den, d


def _edit(d, edit, refingerprint: bool = True) -> None:
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    if refingerprint:
        m["fingerprint"] = mf.fingerprint(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _refused(d, match: str) -> None:
    with pytest.raises(EngineError, match=match):
        vdrt.load_engine(d)
    v = integrity.verify(d)
    assert v.status == "TAMPERED", v


def test_the_package_tells_what_it_was_compiled_for(aoti):
    """Guards the parser against another torch: if Inductor's wrapper source changes, this fails (loudly)."""
    _, d = aoti
    bounds, header = integrity.compiled_facts(d / "model.pt2")
    assert header == {"inputs": 3, "outputs": 1, "constants": header["constants"], "weights_inside": False}
    assert header["constants"] > 10
    assert bounds[0, 2]["large"] == 5 and bounds[0, 3]["large"] == 32 and bounds[0, 1] == {"static": 3}
    assert integrity.aoti_problems(d / "model.pt2", mf.read(d)) == []


def test_an_intact_copy_loads_and_matches_eager(aoti):
    den, d = aoti
    x = random_call(den.config, 2, 5, 32, 32, 7, seed=1)
    assert rel_err(vdrt.load_engine(d)(*x), den(*x)) <= 1e-4


def test_weights_dropped_from_the_list_are_refused_not_a_segfault(aoti):
    _, d = aoti
    _edit(d, lambda m: m["artifacts"].pop("weights.safetensors"))
    _refused(d, r"file weights\.safetensors in the engine directory is not listed")
    (d / "weights.safetensors").unlink()
    _refused(d, r"model\.pt2 was compiled with its weights outside the package, but manifest\.json lists no "
                r"weights\.safetensors")


def test_a_changed_backend_never_opens_the_unlisted_package(aoti):
    _, d = aoti

    def to_onnx(m):
        m["backend"] = "onnx"
        m["artifacts"] = {"model.onnx": m["artifacts"]["weights.safetensors"]}

    _edit(d, to_onnx)
    _refused(d, r"files model\.pt2, weights\.safetensors in the engine directory are not listed")


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["profiles"]["frames"].update(max=9), r"compiled for input latents with frames <= 5, but manifest"
                                                       r"\.json's profile allows frames up to 9"),
    (lambda m: m["profiles"]["width"].update(max=40), r"with width <= 32, but .* up to 40"),
    (lambda m: m["profiles"]["batch"].update(max=4), r"with batch <= 2, but .* up to 4"),
    (lambda m: m["inputs"][0]["shape"].__setitem__(1, 4), r"compiled for input latents with a dim of 3, manifest"),
    (lambda m: m["inputs"].append({"name": "cond", "dtype": "float32", "shape": ["batch"]}),
     r"compiled for 3 inputs and 1 outputs; manifest\.json lists 4 and 1"),
])
def test_a_consistent_edit_of_what_was_compiled_is_refused(aoti, edit, match):
    _, d = aoti
    _edit(d, edit)
    _refused(d, match)


def test_a_hand_edited_profile_is_refused_and_inspect_says_tampered(aoti, capsys):
    den, d = aoti
    _edit(d, lambda m: m["profiles"]["frames"].update(max=9), refingerprint=False)
    _refused(d, "changed after the build")
    assert main(["inspect", str(d)]) == 2
    out = capsys.readouterr().out
    assert "Status: TAMPERED" in out and "frames <= 5" in out and "changed after the build" in out


def test_inspect_of_a_real_engine(aoti, capsys):
    _, d = aoti
    assert main(["inspect", str(d)]) == 0
    out = capsys.readouterr().out
    assert "(aoti, fp32, layout vdrt)" in out and "Status: VALID" in out
    assert "model.pt2" in out and "weights.safetensors" in out and out.count("verified") >= 3
    assert main(["verify", str(d)]) == 0
    assert capsys.readouterr().out.startswith(f"VALID: {d} (aoti engine, fp32, 2 artifact(s)")
    assert torch.__version__ in out
