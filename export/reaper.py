"""Compiler processes die with the build: a watchdog that kills a build's descendants if the build is killed.

A build spawns compilers: Inductor runs `g++` (CPU and the AOTI wrapper) and keeps a pool of
compile workers (`torch._inductor.compile_worker`) that themselves run `g++`/`ptxas`. If the
build process is killed with SIGKILL (or the OOM killer), no Python code of it runs again: its
children are re-parented to init and run on; torch's own compile-worker watchdog notices only
within 60 s, and a running `g++` runs to completion.

`reaping()` starts a small watchdog process (this file run as a script: stdlib only, no torch)
for the duration of a build. It polls /proc twice a second and records every descendant of the
build (pid + start time). When the build process dies without leaving the `with` block (the pipe
to the watchdog reaches EOF), the watchdog SIGKILLs every recorded descendant that is still the
same process, then their descendants, and exits. A normal exit (or an exception) of the block
tells the watchdog to stop without killing anything.

What it cannot do: a process spawned and detached (double fork into another session) in the
last half second before the kill is not yet recorded; a process that changed its uid cannot be
signalled; without /proc (macOS, Windows) `reaping()` does nothing (logged at debug level).
"""
from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
from typing import Iterator

log = logging.getLogger(__name__)

POLL_S = 0.5
STOP = b"q"


@contextlib.contextmanager
def reaping() -> Iterator[None]:
    """Within the block, a kill -9 of this process also kills every process it started (see the module doc)."""
    if not os.path.isdir("/proc/self") or os.environ.get("VDRT_NO_REAPER"):
        log.debug("no /proc here (or VDRT_NO_REAPER): compiler processes are not reaped if the build is killed")
        yield
        return
    watchdog = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)
    try:
        yield
    finally:
        _stop(watchdog)


def _stop(watchdog: subprocess.Popen) -> None:
    try:
        watchdog.stdin.write(STOP)
        watchdog.stdin.close()
        watchdog.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("the build's process watchdog did not stop cleanly (%s); killing it", e)
        watchdog.kill()


# ---------------------------------------------------------------- the watchdog (runs as a script)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of `pid`, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == b"Z" else (int(fields[1]), int(fields[19]))


def _table() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, start time)} of every live process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def _descendants(roots: set[int], table: dict) -> dict[int, int]:
    """{pid: start time} of every process below `roots` in `table`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, list(roots)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found and c != os.getpid():
                found[c] = table[c][1]
                todo.append(c)
    return found


def _kill(tracked: dict[int, int]) -> int:
    """SIGKILL every tracked process still alive as the same process (start time); returns how many."""
    n = 0
    for pid, start in tracked.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                n += 1
    return n


def _parent_gone(fd: int) -> bool | None:
    """True: the parent died (EOF without STOP); False: it said STOP; None: nothing yet."""
    ready, _, _ = select.select([fd], [], [], POLL_S)
    if not ready:
        return None
    data = os.read(fd, 64)
    return not data.startswith(STOP)


def watch(parent: int, fd: int = 0) -> int:
    """Record `parent`'s descendants until it says STOP (returns 0) or dies (kills them, returns the count)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the build; it tells us STOP when it exits
    tracked: dict[int, int] = {}
    while True:
        tracked.update(_descendants({parent}, _table()))
        gone = _parent_gone(fd)
        if gone is False:
            return 0
        if gone or _stat(parent) is None:
            break
    killed = 0
    for _ in range(3):  # the orphans' own children, spawned while we were killing
        tracked.update(_descendants(set(tracked), _table()))
        killed += _kill(tracked)
    return killed


if __name__ == "__main__":
    watch(int(sys.argv[1]))
