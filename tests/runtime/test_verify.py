"""Engine directory integrity (vdrt.engines.integrity) and the `vdrt verify` / `vdrt inspect` commands, on hand-made
ONNX engines: exactly the listed files, each with its hash, checked before anything is deserialized; every problem
named; exit 2 for anything but VALID. (AOTI-specific checks on real builds: tests/export/test_engine_integrity.py.)"""
from __future__ import annotations

import json
import os

import pytest
import torch
from integrity_helpers import edit_manifest, write_engine

from vdrt.cli import main
from vdrt.engines import integrity, load_engine
from vdrt.errors import EngineError

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def never_deserialized(monkeypatch):
    """onnxruntime must not be reached: the checks come first."""
    def refuse(*a, **k):
        raise AssertionError("an unverified engine reached onnxruntime")

    monkeypatch.setattr(ort, "InferenceSession", refuse)


def _flip(f, at: int = 40) -> None:
    data = bytearray(f.read_bytes())
    data[at] ^= 0x01
    f.write_bytes(bytes(data))


def test_valid_engine_verifies_and_runs(tmp_path, capsys):
    d = write_engine(tmp_path / "e")
    v = integrity.verify(d)
    assert v.ok and v.status == "VALID" and v.problems == [] and v.artifacts == {"model.onnx": "verified"}
    x = torch.randn(1, 3, 3, 8, 8)
    assert torch.equal(load_engine(d)(x, torch.rand(1), torch.randn(1, 4, 64)), 2 * x)
    assert main(["verify", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"VALID: {d} (onnx engine, fp32, 1 artifact(s)") and "all sha256 verified" in out


TAMPERINGS = {  # name -> (tamper(d), what the message says)
    "unlisted file": (lambda d: (d / "weights.bin").write_bytes(b"x" * 64),
                      r"file weights\.bin in the engine directory is not listed in manifest\.json's artifacts"),
    "unlisted dir": (lambda d: (d / "sub").mkdir(), r"file sub in the engine directory is not listed"),
    "hidden file": (lambda d: (d / ".x").write_text("x"), r"file \.x in the engine directory is not listed"),
    "missing artifact": (lambda d: (d / "model.onnx").unlink(), r"artifact model\.onnx is missing"),
    "flipped bit": (lambda d: _flip(d / "model.onnx"), r"artifact model\.onnx does not match its sha256"),
    "truncated": (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-1]),
                  r"model\.onnx does not match its sha256"),
    "symlinked artifact": (lambda d: (os.rename(d / "model.onnx", d.parent / "real.onnx"),
                                      os.symlink(d.parent / "real.onnx", d / "model.onnx")),
                           r"artifact model\.onnx is a symbolic link"),
    "hand-edited profile": (lambda d: edit_manifest(d, lambda m: m["profiles"]["frames"].update(max=9), False),
                            r"manifest\.json was changed after the build"),
    "listed artifact dropped": (lambda d: edit_manifest(d, lambda m: m["artifacts"].pop("model.onnx")),
                                r"the onnx backend writes \['model\.onnx'\]"),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampered_engine_is_refused_before_loading(tmp_path, never_deserialized, capsys, name):
    tamper, match = TAMPERINGS[name]
    d = write_engine(tmp_path / "e")
    tamper(d)
    with pytest.raises(EngineError, match=match) as e:
        load_engine(d)
    assert str(e.value).startswith(str(d)) and "\n" not in str(e.value)
    assert main(["verify", str(d)]) == 2
    out = capsys.readouterr().out
    assert out.split(":")[0] in ("TAMPERED", "INVALID") and f": {d}\n" in out
    import re

    assert re.search(match, out), out


def test_verify_names_every_problem_and_load_stops_at_the_first(tmp_path, monkeypatch):
    d = write_engine(tmp_path / "e")
    edit_manifest(d, lambda m: m["artifacts"].update(
        {"weights.bin": {"sha256": "0" * 64, "bytes": 3}}))  # listed, absent
    (d / "stray.txt").write_text("x")
    _flip(d / "model.onnx")
    v = integrity.verify(d)
    assert v.status == "TAMPERED" and len(v.problems) == 3
    assert v.artifacts == {"model.onnx": "does not match its sha256 in manifest.json (corrupted or tampered with)",
                           "weights.bin": "is missing"}
    hashed = []
    real = integrity.mf.artifact_problem
    monkeypatch.setattr(integrity.mf, "artifact_problem", lambda *a: hashed.append(a[1]) or real(*a))
    first = integrity.verify(d, first_only=True)
    assert len(first.problems) == 1 and "stray.txt" in first.problems[0] and hashed == []


def test_verify_cli_json_and_not_an_engine(tmp_path, capsys):
    d = write_engine(tmp_path / "e")
    _flip(d / "model.onnx")
    assert main(["verify", str(d), "--json"]) == 2
    got = json.loads(capsys.readouterr().out)
    assert got["status"] == "TAMPERED" and "model.onnx" in got["problems"][0]
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an engine directory (no manifest.json)" in err


def test_inspect_reads_like_polygraphy_and_verifies(tmp_path, capsys):
    d = write_engine(tmp_path / "e")
    assert main(["inspect", str(d)]) == 0
    out = capsys.readouterr().out
    for want in ("==== vdrt engine", "Status: VALID", "---- 3 Input(s) ----",
                 "latents  [dtype=float32, shape=(batch, 3, frames, height, width)]", "---- 1 Output(s) ----",
                 "---- Profile (latent units) ----", "latents: min=(1, 3, 1, 4, 4), opt=(1, 3, 3, 16, 16), "
                 "max=(2, 3, 5, 32, 32)", "---- 1 Artifact(s)", "model.onnx", "verified", "Fingerprint: sha256:",
                 "Signature:   none (unsigned)", "Model: factorized"):
        assert want in out, want
    assert main(["inspect", str(d), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "onnx" and info["verdict"]["status"] == "VALID"


def test_inspect_reports_a_tampered_engine_as_tampered(tmp_path, capsys):
    d = write_engine(tmp_path / "e")
    edit_manifest(d, lambda m: m["profiles"]["frames"].update(max=50), refingerprint=False)
    (d / "extra.so").write_bytes(b"\x7fELF")
    assert main(["inspect", str(d)]) == 2
    out = capsys.readouterr().out
    assert "Status: TAMPERED" in out and "---- 2 Problem(s) ----" in out and "extra.so" in out
    assert "changed after the build" in out and "Fingerprint: sha256:" in out and "does NOT match" in out
    assert main(["inspect", str(d), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["verdict"]["status"] == "TAMPERED"


def test_inspect_of_an_invalid_manifest_names_the_key(tmp_path, capsys):
    d = write_engine(tmp_path / "e")
    edit_manifest(d, lambda m: m["profiles"]["frames"].update(max="5"))
    assert main(["inspect", str(d)]) == 2
    out = capsys.readouterr().out
    assert "Status: INVALID" in out and "profiles.frames.max: Input should be a valid integer" in out


@pytest.mark.parametrize("source, kind", [("vdrt-tiny", "embedded model (weights sha256 verified)"),
                                          ("wan-tiny", "preset (random weights)")])
def test_inspect_takes_embedded_models_and_presets(source, kind, capsys):
    assert main(["inspect", source]) == 0
    out = capsys.readouterr().out
    assert f"==== vdrt model {source}: {kind} ====" in out and "Params:" in out
    assert main(["inspect", source, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == kind and info["params"] > 1000 and "family" in info["config"]


def test_verify_is_a_registered_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "verify" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "VALID" in capsys.readouterr().out


def test_compiled_lower_bounds_of_two_patches_are_torch_export_specialisation():
    m = {"profiles": {"height": {"min": 4, "opt": 8, "max": 16, "multiple": 2}}}
    spec = {"name": "latents"}
    assert integrity._dim_problems(m, spec, "height", {"small": 4, "large": 16}) == []
    assert integrity._dim_problems(m, spec, "height", {"small": 2}) == []
    assert "height >= 6" in integrity._dim_problems(m, spec, "height", {"small": 6})[0]
    assert "height <= 12" in integrity._dim_problems(m, spec, "height", {"large": 12})[0]
    assert integrity._dim_problems(m, spec, 3, {"static": 3}) == []
    assert "a dim of 4" in integrity._dim_problems(m, spec, 3, {"static": 4})[0]


def test_unreadable_files_are_one_line_not_a_traceback(tmp_path, monkeypatch):
    d = write_engine(tmp_path / "e")
    real_open = open

    def denied(f, *a, **k):
        if str(f).endswith("model.onnx"):
            raise PermissionError(13, "Permission denied", str(f))
        return real_open(f, *a, **k)

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(EngineError, match=r"artifact model\.onnx cannot be read \(Permission denied\)"):
        load_engine(d)
    monkeypatch.undo()
    def unlistable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(integrity.os, "scandir", unlistable)
    with pytest.raises(EngineError, match=r"the engine directory cannot be listed \(Permission denied\)"):
        load_engine(d)
