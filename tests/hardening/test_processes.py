"""Real `vdrt` processes: the exit code and stderr a shell sees, the wall time of an early refusal, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.hardening.hardening_helpers import Ran, files_under, process_refusal, record


@pytest.mark.parametrize("name, argv, words, env", [
    ("wan-tiny 401 frames of 1024x1024", ["generate", "x", "--model", "wan-tiny", "--frames", "401", "--height",
                                           "1024", "--width", "1024", "-o", "o.mp4"],
     ("401 frames of 1024x1024", "needs about", "fit"), {"VDRT_MEMORY_LIMIT": "16G"}),
    ("factorized-tiny 64x2048x2048", ["generate", "x", "--model", "factorized-tiny", "--frames", "64", "--height",
                                      "2048", "--width", "2048", "-o", "o.mp4"], ("at most 32 frames",), {}),
    ("--device cuda on a CPU-only torch", ["generate", "x", "--device", "cuda", "-o", "o.mp4"], ("CPU-only",), {}),
    ("--steps 1e11", ["generate", "x", "--steps", "1e11"], ("invalid int value",), {}),
    ("--seed -1", ["generate", "x", "--seed", "-1", "-o", "o.mp4"], ("[0, 2^63)",), {}),
])
def test_a_refusal_seen_from_the_shell(name, argv, words, env, work):
    t0 = time.perf_counter()
    ran = process_refusal(argv, words, work, timeout=60, env=env)
    took = time.perf_counter() - t0
    if ran.outcome == "CLEAR" and took > 15:  # import torch + describe + estimate: a few seconds, not minutes
        ran = Ran("HANG", f"refused only after {took:.1f} s")
    record("processes", name, ran)


def test_ctrl_c_during_a_generation_exits_130_and_leaves_nothing(work):
    before = files_under(work)
    p = subprocess.Popen([sys.executable, "-m", "vdrt", "--threads", "1", "generate", "x", "--model",
                          "factorized-tiny", "--frames", "16", "--height", "128", "--width", "128", "--steps", "200",
                          "-o", "o.mp4"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    err = ""
    while time.time() < deadline:  # wait until sampling has started
        time.sleep(0.5)
        if p.poll() is not None:
            break
        if "denoise" in (err := err + _read_some(p)):
            break
    p.send_signal(signal.SIGINT)
    try:
        _, rest = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        record("processes", "Ctrl-C", Ran("HANG", "did not stop 30 s after SIGINT"))
        return
    left = sorted(files_under(work) - before)
    ok = p.returncode == 130 and "interrupted" in rest and not left
    record("processes", "Ctrl-C", Ran("CLEAR" if ok else "WRONG", f"rc={p.returncode}, left {left}, {rest[-200:]!r}"))


def _read_some(p) -> str:
    import select

    ready, _, _ = select.select([p.stderr], [], [], 0)
    return os.read(p.stderr.fileno(), 4096).decode(errors="replace") if ready else ""
