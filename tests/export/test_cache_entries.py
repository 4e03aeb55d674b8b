"""Build cache robustness: any malformed, edited, incomplete or foreign entry is rebuilt (never "fails until
--no-cache"); temporaries of killed builds are swept; an unwritable cache is one line naming $VDRT_CACHE.

The backend is a fake that writes a small artifact and counts its calls (as in test_cache.py)."""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from export_helpers import SHAPES

import vdrt
from vdrt import fsutil
from vdrt.engines import integrity
from vdrt.errors import EngineError


def _build(den, out):
    return vdrt.export.build(den, "onnx", out, precision="fp32", shapes=SHAPES["wan-tiny"], load=False)


def _entry(tmp_path) -> Path:
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".") and p.suffix != ".lock"]
    return entry


def _manifest(entry: Path, edit) -> None:
    m = json.loads((entry / "manifest.json").read_text())
    edit(m)
    (entry / "manifest.json").write_text(json.dumps(m))


def _as_file(entry: Path) -> None:
    shutil.rmtree(entry)
    entry.write_text("not a directory")


def _manifest_dir(entry: Path) -> None:
    (entry / "manifest.json").unlink()
    (entry / "manifest.json").mkdir()


BREAKAGES = {
    "garbage json": lambda e: (e / "manifest.json").write_text("{garbage"),
    "json list": lambda e: (e / "manifest.json").write_text("[]"),
    "empty manifest": lambda e: (e / "manifest.json").write_text(""),
    "wrong types": lambda e: _manifest(e, lambda m: m.update(inputs=5, artifacts=[])),
    "artifact record not a dict": lambda e: _manifest(e, lambda m: m["artifacts"].update({"model.onnx": 7})),
    "format 1": lambda e: _manifest(e, lambda m: m.update(format_version=1)),
    "edited profile": lambda e: _manifest(e, lambda m: m["profiles"]["frames"].update(max=99)),
    "unlisted file": lambda e: (e / "stray.so").write_bytes(b"\x7fELF"),
    "missing artifact": lambda e: (e / "model.onnx").unlink(),
    "corrupted artifact": lambda e: (e / "model.onnx").write_bytes(b"x" * 256),
    "entry is a file": _as_file,
    "entry is empty": lambda e: (shutil.rmtree(e), e.mkdir()),
    "manifest is a directory": _manifest_dir,
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_a_broken_entry_is_rebuilt_and_the_build_succeeds(fake_onnx_build, den, tmp_path, caplog, name):
    _build(den, tmp_path / "a")
    entry = _entry(tmp_path)
    BREAKAGES[name](entry)
    with caplog.at_level(logging.WARNING, logger="vdrt.export.cache"):
        out = _build(den, tmp_path / "b")
    assert len(fake_onnx_build) == 2
    assert integrity.verify(out).ok and integrity.verify(entry).ok
    assert f"build cache entry {entry.name} is corrupted" in caplog.text and "rebuilding it" in caplog.text
    _build(den, tmp_path / "c")
    assert len(fake_onnx_build) == 2  # and the rebuilt entry is a hit again


def test_stale_build_dirs_in_the_cache_are_swept(fake_onnx_build, den, tmp_path, caplog):
    root = tmp_path / "cache"
    root.mkdir()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = root / f".{'k' * 40}.vdrt-{fsutil.host_tag()}-{p.pid}-7-abcdefgh.tmp"
    live = root / f".{'k' * 40}.vdrt-{fsutil.host_tag()}-{os.getpid()}-{fsutil.process_start(os.getpid())}-x.tmp"
    for d in (dead, live):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"half written")
    with caplog.at_level(logging.INFO, logger="vdrt.export.cache"):
        _build(den, tmp_path / "a")
    assert not dead.exists() and live.exists()
    assert "left in the build cache by a build that was killed" in caplog.text


def test_an_unwritable_cache_is_one_line_naming_vdrt_cache(fake_onnx_build, den, tmp_path, monkeypatch):
    real = Path.mkdir

    def denied(self, *a, **k):
        if self == tmp_path / "cache":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(EngineError, match=r"writing the build cache .*cache failed: permission denied .*set "
                                          r"\$VDRT_CACHE to a folder .* or build without the cache \(vdrt build "
                                          r"--no-cache, cache=False\)") as e:
        _build(den, tmp_path / "a")
    assert "\n" not in str(e.value) and fake_onnx_build == [] and not (tmp_path / "a").exists()
