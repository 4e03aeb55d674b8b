"""The libstdc++ preload for AOTI packages (the lent GPU image's quirk), tested on the CPU with a fake probe.

The real crash cannot happen here; the probe code is replaced by one that segfaults unless
LD_PRELOAD holds the library, which is exactly the condition the mechanism must detect and fix.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from vdrt.engines import aoti_preload as ap
from vdrt.errors import EngineError

LIB = ap.PRELOAD_LIB
needs_lib = pytest.mark.skipif(not os.path.exists(LIB) or sys.platform != "linux", reason=f"no {LIB} here")
CRASH_UNLESS_PRELOADED = ("import os, signal\n"
                          f"if {LIB!r} not in os.environ.get('LD_PRELOAD', ''):\n"
                          "    os.kill(os.getpid(), signal.SIGSEGV)\n")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(ap.ENV_DONE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(ap, "_ALLOW_REEXEC", False)


@needs_lib
def test_preload_env_prepends_once_and_sets_the_guard(clean_env):
    env = ap.preload_env({"LD_PRELOAD": "/x/libfoo.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"] == f"{LIB}:/x/libfoo.so" and env[ap.ENV_DONE] == "1" and env["PATH"] == "/bin"
    assert ap.preload_env(env)["LD_PRELOAD"] == env["LD_PRELOAD"]
    assert ap.preload_active(env) and not ap.preload_active({"LD_PRELOAD": "/x/libfoo.so"})


@pytest.mark.parametrize("raw, want", [("auto", "auto"), ("1", "always"), ("0", "never"), ("probe", "probe"),
                                       ("OFF", "never")])
def test_mode(monkeypatch, raw, want):
    monkeypatch.setenv(ap.ENV_MODE, raw)
    assert ap.mode() == want


def test_bad_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(ap.ENV_MODE, "sometimes")
    with pytest.raises(EngineError, match="VDRT_AOTI_PRELOAD"):
        ap.mode()


@needs_lib
def test_modes_decide_without_probing(clean_env, monkeypatch):
    monkeypatch.setattr(ap, "probe_crashes", lambda *a: pytest.fail("must not probe"))
    monkeypatch.setenv(ap.ENV_MODE, "1")
    assert ap.needs_preload("pkg.pt2")
    monkeypatch.setenv(ap.ENV_MODE, "0")
    assert not ap.needs_preload("pkg.pt2")
    monkeypatch.setenv(ap.ENV_MODE, "auto")
    monkeypatch.setattr(ap, "_cuda_torch", lambda: False)  # CPU torch builds never showed the quirk
    assert not ap.needs_preload("pkg.pt2")
    monkeypatch.setenv("LD_PRELOAD", LIB)
    monkeypatch.setenv(ap.ENV_MODE, "1")
    assert not ap.needs_preload("pkg.pt2")  # already preloaded


@needs_lib
def test_probe_detects_the_crash_and_caches_the_verdict(clean_env, monkeypatch):
    monkeypatch.setenv(ap.ENV_MODE, "probe")
    monkeypatch.setattr(ap, "PROBE_CODE", CRASH_UNLESS_PRELOADED)
    assert ap.needs_preload("pkg.pt2") is True
    monkeypatch.setattr(ap.subprocess, "run", lambda *a, **k: pytest.fail("the verdict should be cached"))
    assert ap.needs_preload("other.pt2") is True
    assert ap._cache_file().is_file()


@needs_lib
def test_probe_that_loads_fine_says_no(clean_env, monkeypatch):
    monkeypatch.setenv(ap.ENV_MODE, "probe")
    monkeypatch.setattr(ap, "PROBE_CODE", "pass\n")
    assert ap.needs_preload("pkg.pt2") is False


@needs_lib
def test_library_use_gets_an_error_instead_of_a_segfault(clean_env, monkeypatch):
    monkeypatch.setenv(ap.ENV_MODE, "1")
    monkeypatch.setenv(ap.ENV_REEXEC, "0")
    with pytest.raises(EngineError, match=re.escape(f"LD_PRELOAD={LIB}") + ".*ensure_preload"):
        ap.guard("pkg.pt2")


@needs_lib
def test_ensure_preload_reexecs_the_program_once(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        print("start", flush=True)
        from vdrt.engines import aoti_preload as ap
        ap.PROBE_CODE = {CRASH_UNLESS_PRELOADED!r}
        ap.ensure_preload("pkg.pt2")
        print("LD_PRELOAD=" + os.environ.get("LD_PRELOAD", ""), "args=" + ",".join(sys.argv[1:]))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ap.ENV_DONE)}
    env.update({ap.ENV_MODE: "probe", "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    r = subprocess.run([sys.executable, str(script), "a", "b"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines.count("start") == 2  # ran, re-executed itself once
    assert lines[-1] == f"LD_PRELOAD={LIB} args=a,b"
