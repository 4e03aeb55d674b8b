"""Claiming a build's out directory (vdrt.export.claim): one writer, checks under the lock, stale temporaries of
killed builds swept, disk-full / permission errors as one line with nothing left behind, signing at publish.

The backend is a fake that writes a small artifact (as in test_cache.py), so builds take a second."""
from __future__ import annotations

import errno
import importlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from export_helpers import SHAPES

import vdrt
from vdrt import fsutil
from vdrt.errors import ConfigError, EngineError
from vdrt.export import claim as claim_mod

onnx_backend = importlib.import_module("vdrt.export.onnx")


def _build(den, out, **kw):
    kw = {"precision": "fp32", "shapes": SHAPES["wan-tiny"], "load": False, **kw}
    return vdrt.export.build(den, "onnx", out, **kw)


def _litter(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


HOLDER = textwrap.dedent('''
    import sys
    from vdrt.export.claim import claim_out

    with claim_out(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()
''')


def test_a_second_writer_is_refused_at_once_naming_the_first(tmp_path):
    out = tmp_path / "e"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match=rf"another build is writing engine directory {out} right now "
                                              rf"\(pid {holder.pid} on \w+, since [\d:]+\); wait for it"):
            with claim_mod.claim_out(out):
                pass
        assert time.perf_counter() - t0 < 1  # refused, not waited
    finally:
        holder.communicate("\n", timeout=30)
    with claim_mod.claim_out(out):  # released: free again, and the lock file is gone after
        pass
    assert _litter(tmp_path) == []


def test_another_thread_of_the_process_is_refused_and_one_thread_reenters(tmp_path):
    out, seen = tmp_path / "e", []
    with claim_mod.claim_out(out) as outer:
        with claim_mod.claim_out(out) as inner:
            assert inner is outer
        t = threading.Thread(target=lambda: seen.append(_try_claim(out)))
        t.start()
        t.join()
    assert "another build is writing" in seen[0]
    assert _try_claim(out) == "ok" and _litter(tmp_path) == []


def test_lock_files_of_killed_builds_are_removed_held_ones_kept(tmp_path):
    (tmp_path / ".dead.vdrt-lock").write_text("pid 1 on host, since 00:00:00")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "busy")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "held"
        with claim_mod.claim_out(tmp_path / "e"):
            pass
        assert _litter(tmp_path) == [".busy.vdrt-lock"]
    finally:
        holder.communicate("\n", timeout=30)
    assert _litter(tmp_path) == []


def _try_claim(out) -> str:
    try:
        with claim_mod.claim_out(out):
            return "ok"
    except ConfigError as e:
        return str(e)


BUILDER = textwrap.dedent('''
    import importlib, json, os, sys, time
    from pathlib import Path
    import vdrt
    from vdrt.errors import VdrtError

    out, started, done, name = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    onnx = importlib.import_module("vdrt.export.onnx")

    def build_artifacts(target, example, workdir, options):
        started.write_text(name)  # under the claim now: let the other builder start
        t0 = time.time()
        while not done.exists() and time.time() - t0 < 60:
            time.sleep(0.05)
        (workdir / "model.onnx").write_bytes(name.encode() * 64)
        return ["model.onnx"], {"export": 0.0, "compile": 0.0}, target.profile

    onnx.build_artifacts = build_artifacts
    shapes = {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (4, 8, 16), "width": (4, 8, 16),
              "text_len": (1, 16, 32)}
    try:
        vdrt.export.build(vdrt.load_denoiser("wan-tiny"), "onnx", out, precision="fp32", shapes=shapes,
                          load=False, cache=False)
        print(json.dumps({"wrote": name}))
    except VdrtError as e:
        print(json.dumps({"refused": name, "error": str(e)}))
    finally:
        done.write_text(name)
''')


def test_two_concurrent_builds_to_one_out_one_writes_one_is_refused(tmp_path):
    out, started, done = tmp_path / "e", tmp_path / "started", tmp_path / "done"

    def run(name):
        return subprocess.Popen([sys.executable, "-c", BUILDER, str(out), str(started), str(done), name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)

    first = run("first")
    t0 = time.time()
    while not started.exists() and time.time() - t0 < 120 and first.poll() is None:
        time.sleep(0.05)
    assert started.read_text() == "first"
    second = run("second")
    results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in (second, first)]
    assert results[0]["refused"] == "second" and "another build is writing engine directory" in results[0]["error"]
    assert results[1] == {"wrote": "first"}
    assert (out / "model.onnx").read_bytes() == b"first" * 64
    assert _litter(tmp_path) == []


def test_out_is_checked_again_under_the_claim(tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="already exists.*force=True"):
        with claim_mod.claim_out(out, force=False):
            pass
    (tmp_path / "file").write_text("x")
    for force in (False, True, None):
        with pytest.raises(EngineError, match="exists and is not an engine directory"):
            with claim_mod.claim_out(tmp_path / "file", force=force):
                pass
    with claim_mod.claim_out(out, force=True) as c:
        with c.staging() as tmp:
            (tmp / "x").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["x"] and _litter(tmp_path) == []


def test_out_appearing_during_the_build_is_not_replaced_without_force(tmp_path):
    out = tmp_path / "e"
    with pytest.raises(ConfigError, match="already exists"):
        with claim_mod.claim_out(out, force=False) as c:
            with c.staging() as tmp:
                (tmp / "x").write_text("mine")
                out.mkdir()
                (out / "manifest.json").write_text("theirs")  # a non-vdrt writer, meanwhile
    assert (out / "manifest.json").read_text() == "theirs" and _litter(tmp_path) == []


def test_a_failed_build_leaves_nothing_not_even_the_parents_it_made(tmp_path):
    out = tmp_path / "a" / "b" / "e"
    with pytest.raises(RuntimeError, match="boom"):
        with claim_mod.claim_out(out) as c:
            with c.staging() as tmp:
                (tmp / "model.onnx").write_bytes(b"half")
                raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _tagged(parent, name, pid, start, host=None, suffix=".tmp"):
    d = parent / f".{name}.vdrt-{host or fsutil.host_tag()}-{pid}-{start}-abc123{suffix}"
    d.mkdir()
    (d / "model.pt2").write_bytes(b"x")
    return d


def test_stale_temporaries_of_dead_builds_are_swept_live_ones_kept(tmp_path, caplog):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that is gone
    me, start = os.getpid(), fsutil.process_start(os.getpid())
    dead = [_tagged(tmp_path, "e", p.pid, 1), _tagged(tmp_path, "e", me, start + 1, suffix=".old"),  # reused pid
            _tagged(tmp_path, "other", p.pid, 1)]
    kept = [_tagged(tmp_path, "e", me, start), _tagged(tmp_path, "e", p.pid, 1, host="elsewhere")]
    (tmp_path / ".e.mine.tmp").mkdir()  # not named by vdrt: never touched
    kept.append(tmp_path / ".e.mine.tmp")
    with caplog.at_level("INFO", logger="vdrt.export.claim"):
        with claim_mod.claim_out(tmp_path / "e"):
            pass
    assert not any(d.exists() for d in dead) and all(d.exists() for d in kept)
    assert caplog.text.count("left by a build that was killed") == 3


def test_process_liveness_follows_pid_and_start_time():
    me = os.getpid()
    assert fsutil.process_alive(me) and fsutil.process_alive(me, fsutil.process_start(me))
    if os.path.isdir("/proc/self"):
        assert not fsutil.process_alive(me, fsutil.process_start(me) + 1)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not fsutil.process_alive(p.pid)


@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "no space left on the device"),
                                        (errno.EDQUOT, "the disk quota is exceeded"),
                                        (errno.EACCES, "permission denied"),
                                        (errno.EROFS, "the file system is read-only")])
def test_disk_and_permission_errors_at_publish_are_one_line(fake_onnx_build, den, tmp_path, monkeypatch, code, says):
    real = os.rename

    def failing(src, dst):
        if str(dst).endswith("/out"):
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst)

    monkeypatch.setattr(claim_mod.os, "rename", failing)
    with pytest.raises(EngineError, match=rf"writing the engine to {tmp_path}/out failed: {says}") as e:
        _build(den, tmp_path / "out")
    assert "\n" not in str(e.value) and "nothing was left behind" in str(e.value)
    assert not (tmp_path / "out").exists() and _litter(tmp_path) == []


def test_disk_full_while_writing_the_manifest_uncached(fake_onnx_build, den, tmp_path, monkeypatch):
    real = os.replace

    def full(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(EngineError, match=r"no space left on the device \(.*manifest\.json\); free some space"):
        _build(den, tmp_path / "out", cache=False)
    assert not (tmp_path / "out").exists() and _litter(tmp_path) == []


def test_disk_full_in_the_build_cache_names_the_cache(fake_onnx_build, den, tmp_path, monkeypatch):
    def full(target, example, workdir, options):
        raise OSError(errno.ENOSPC, "No space left on device", str(workdir / "model.onnx"))

    monkeypatch.setattr(onnx_backend, "build_artifacts", full)
    with pytest.raises(EngineError, match=r"writing the build cache .*cache failed: no space left.*VDRT_CACHE.*"
                                          r"--no-cache"):
        _build(den, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []


def test_unwritable_out_parent_is_refused_before_the_build(fake_onnx_build, den, tmp_path, monkeypatch):
    real = os.open

    def denied(path, *a, **k):
        if str(path).endswith(".vdrt-lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(claim_mod.os, "open", denied)
    with pytest.raises(EngineError, match=r"permission denied \(.*\.out\.vdrt-lock\); choose an --out in a folder "
                                          r"you can write"):
        _build(den, tmp_path / "out")
    assert fake_onnx_build == []


def test_wrapped_compiler_errors_are_recognised_and_others_are_not():
    class CppCompileError(RuntimeError):
        pass

    wrapped = CppCompileError("g++ failed:\n/tmp/x.o: fatal error: No space left on device")
    assert claim_mod.disk_error(wrapped).errno == errno.ENOSPC
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("compile failed") from inner
    except RuntimeError as outer:
        assert claim_mod.disk_error(outer).errno == errno.EDQUOT
    assert claim_mod.disk_error(ValueError("bad shape")) is None
    assert claim_mod.disk_error(OSError(errno.ENOENT, "missing")) is None


def test_published_engines_are_signed_when_a_signing_key_is_set(fake_onnx_build, den, tmp_path, monkeypatch):
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    ser = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = ed.Ed25519PrivateKey.generate()
    pem = tmp_path / "k.pem"
    pem.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    monkeypatch.setenv("VDRT_SIGNING_KEY", str(pem))
    out = _build(den, tmp_path / "out")
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    from vdrt.engines import integrity

    assert integrity.verify(out, [raw]).ok
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert "signature" not in json.loads((entry / "manifest.json").read_text())  # the cache keeps it unsigned
    monkeypatch.setenv("VDRT_SIGNING_KEY", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="signing key .*missing.pem is unreadable"):
        _build(den, tmp_path / "out2", cache=False)
    assert len(fake_onnx_build) == 1 and not (tmp_path / "out2").exists()
