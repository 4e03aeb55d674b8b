"""Compiler processes die with the build (vdrt.export.reaper): a kill -9 of a build process inside `reaping()`
takes its children and grandchildren with it; a normal exit leaves them alone and stops the watchdog."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from vdrt import fsutil
from vdrt.export import reaper

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the watchdog reads /proc (Linux)")

BUILD = textwrap.dedent('''
    import subprocess, sys, time
    from vdrt.export.reaper import reaping

    with reaping():
        child = subprocess.Popen(["sleep", "300"])
        shell = subprocess.Popen(["sh", "-c", "sleep 301 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
        grandchild = int(shell.stdout.readline())
        print(child.pid, shell.pid, grandchild, flush=True)
        time.sleep(1.5)  # the watchdog polls twice a second: now it has recorded them
        print("compiling", flush=True)
        time.sleep(300)
''')


def _gone(pids, timeout: float) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if not any(fsutil.process_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _kill_ours(pids) -> None:
    for p in pids:
        if fsutil.process_alive(p):
            os.kill(p, signal.SIGKILL)


def test_kill_9_of_the_build_kills_its_compilers(tmp_path):
    build = subprocess.Popen([sys.executable, "-c", BUILD], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    pids = [int(p) for p in build.stdout.readline().split()]
    try:
        assert build.stdout.readline().strip() == "compiling"
        assert all(fsutil.process_alive(p) for p in pids)
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=10)
        assert _gone(pids, timeout=10), [p for p in pids if fsutil.process_alive(p)]
    finally:
        _kill_ours(pids)


def test_a_normal_exit_leaves_children_alone_and_stops_the_watchdog():
    with reaper.reaping():
        child = subprocess.Popen(["sleep", "60"])
        watchdogs = [p for p, (pp, _) in reaper._table().items() if pp == os.getpid() and p != child.pid]
    try:
        assert len(watchdogs) == 1
        assert _gone(watchdogs, timeout=10)
        assert child.poll() is None  # not killed: the build ended normally
    finally:
        child.kill()
        child.wait()


def test_the_watchdog_kills_only_what_it_recorded_and_only_the_same_process():
    """Unit check of the bookkeeping: a recorded pid whose start time changed (recycled) is not signalled."""
    p = subprocess.Popen(["sleep", "60"])
    try:
        start = reaper._stat(p.pid)[1]
        assert reaper._kill({p.pid: start + 1}) == 0 and p.poll() is None
        table = reaper._table()
        assert reaper._descendants({os.getpid()}, table)[p.pid] == start
        assert reaper._kill({p.pid: start}) == 1
        assert p.wait(timeout=10) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()


REAL_BUILD = textwrap.dedent('''
    import sys
    import vdrt

    shapes = {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (8, 16, 32), "width": (8, 16, 32),
              "text_len": (1, 16, 32)}
    vdrt.export.build(vdrt.load_denoiser("factorized-tiny"), "aoti", sys.argv[1], precision="fp32", shapes=shapes,
                      load=False)
''')
SLOW_CXX = """#!/bin/sh
case "$*" in *.cpp*) sleep 60 ;; esac
exec g++ "$@"
"""


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@pytest.mark.slow
def test_kill_9_of_a_real_aoti_build_leaves_no_compiler_and_the_next_build_sweeps(tmp_path):
    """The real thing: an AOTI build killed while Inductor compiles C++ (through a compiler wrapper that takes a
    minute, so only the watchdog can explain its death); the compilers die, the next build of the same out is not
    blocked by the dead one's claim, and its temporary cache entry is swept."""
    cxx = tmp_path / "slowcxx"
    cxx.write_text(SLOW_CXX)
    cxx.chmod(0o755)
    env = {**os.environ, "VDRT_CACHE": str(tmp_path / "cache"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind"),
           "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1", "CXX": str(cxx)}
    out = tmp_path / "e"
    build = subprocess.Popen([sys.executable, "-c", REAL_BUILD, str(out)], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, int] = {}
    try:
        t0 = time.time()
        while time.time() - t0 < 240 and build.poll() is None and "sleep" not in map(_comm, seen):
            seen.update(reaper._descendants({build.pid}, reaper._table()))
            time.sleep(0.1)
        assert "sleep" in map(_comm, seen), "the compiler wrapper never ran"
        time.sleep(0.6)  # the watchdog's poll
        os.kill(build.pid, signal.SIGKILL)
        build.wait(timeout=10)
        assert _gone(list(seen), timeout=5), {p: _comm(p) for p in seen if fsutil.process_alive(p)}
    finally:
        build.kill()
        _kill_ours(seen)
    left = [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and f"-{build.pid}-" in left[0]  # what the kill left behind ...
    from vdrt.export import claim

    with claim.claim_out(out) as c:  # ... the dead build's claim does not block the next one
        with c.staging() as tmp:
            (tmp / "x").write_text("next build")
    assert (out / "x").read_text() == "next build"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    fsutil.sweep_stale(tmp_path / "cache")  # what the next build's cache lookup runs (tested in test_cache_entries)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")] == []
