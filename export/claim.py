"""Claiming a build's `out` directory: one writer at a time, checked under the lock, published atomically.

    with claim_out(out, force) as claim:       # refuses at once if another build is writing `out`
        ...                                    # export, compile (minutes)
        claim.publish(cache_entry)             # or: with claim.staging() as tmp: build into tmp

- The lock is `.<out>.vdrt-lock` beside `out` (flock, holding the owner's pid for the message); a
  second build of the same `out` is refused before any work, naming that pid. Re-entrant within
  a thread, so `build()` and `build_target()` can both claim.
- Under the lock, an existing non-empty `out` is refused unless `force` (then only an engine
  directory is replaced, never a directory of other files).
- Staging directories are named with pid and start time; those of dead builds are removed when
  a build next claims an `out` in that folder (vdrt.fsutil.sweep_stale). Nothing half-written is
  left at `out`.
- With $VDRT_SIGNING_KEY set, what is published is signed (vdrt.export.manifest.sign_engine).
- Disk full, quota and permission errors anywhere inside the block become one EngineError line
  naming the path and the fix; nothing is left behind.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

from vdrt import fsutil
from vdrt.errors import ConfigError, EngineError, VdrtError

log = logging.getLogger(__name__)

DISK_ERRORS, disk_error = fsutil.DISK_ERRORS, fsutil.disk_error  # (defined once, in vdrt.fsutil)
_held: dict[Path, "Claim"] = {}
_held_lock = threading.Lock()


class Claim:
    """The right to write `out`: the lock file's descriptor, what to do with an existing `out`."""

    def __init__(self, out: Path, force: bool | None):
        self.out, self.force, self.depth, self.thread = out, force, 0, threading.get_ident()
        self.lock_path = out.parent / f".{out.name}.vdrt-lock"
        self.fd: int | None = None

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """An empty directory beside `out`; on success it is signed if asked and renamed onto `out`."""
        tmp = fsutil.owned_tempdir(self.out.parent, self.out.name)
        try:
            yield tmp
            _sign_if_asked(tmp)
            self._swap_in(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def publish(self, entry: Path) -> None:
        """Copy the engine directory `entry` (a cache entry) to `out`."""
        if self.out.resolve() == Path(entry).resolve():
            return
        from vdrt.engines import integrity

        with self.staging() as tmp:
            for f in Path(entry).iterdir():
                shutil.copy2(f, tmp / f.name)
            integrity.check(tmp, trusted_keys=())  # the copy is whole (the entry may have changed meanwhile)

    def _swap_in(self, tmp: Path) -> None:
        """Rename `tmp` onto `out`; an old `out` (an engine dir, checked again here) is moved aside, then deleted."""
        check_replaceable(self.out, self.force)
        old = None
        if self.out.exists():
            old = fsutil.owned_tempdir(self.out.parent, self.out.name, suffix=".old")
            os.rename(self.out, old / "d")
        os.rename(tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def check_replaceable(out: Path, force: bool | None) -> None:
    """`out` may be written: absent or empty; with force (or None: the caller checked) an engine directory."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise EngineError(f"{out} exists and is not an engine directory; choose another --out or remove it")
    if not any(out.iterdir()):
        return
    if not (out / "manifest.json").is_file():
        raise EngineError(f"{out} exists and is not an engine directory; choose another --out or remove it")
    if force is False:
        raise ConfigError(f"{out} already exists; choose another out directory, or pass force=True "
                          "(vdrt build --force) to replace the engine there")


@contextlib.contextmanager
def claim_out(out, force: bool | None = None) -> Iterator[Claim]:
    """Hold `out` for one build (see the module doc); nested claims of one thread share the outer one."""
    out = Path(os.path.abspath(out))
    claim, made, ok = _enter(out, force), None, False
    try:
        with disk_errors(out):
            if claim.depth == 1:
                made = _make_parents(out)
                _lock(claim)
                check_replaceable(out, force)
                _signing_key_ok()
                _sweep(out)
            yield claim
            ok = True
    finally:
        _leave(claim)
        if not ok and made is not None and not out.exists():
            _remove_empty(out.parent, made)


def _enter(out: Path, force: bool | None) -> Claim:
    with _held_lock:
        claim = _held.get(out)
        if claim is not None and claim.thread != threading.get_ident():
            claim = None  # another thread of this process: its flock refuses us below, as another process would
        if claim is None:
            claim = Claim(out, force)
            _held.setdefault(out, claim)
        claim.depth += 1
        return claim


def _leave(claim: Claim) -> None:
    with _held_lock:
        claim.depth -= 1
        if claim.depth:
            return
        if _held.get(claim.out) is claim:
            del _held[claim.out]
    if claim.fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(claim.lock_path)  # while still locked: a waiter then finds the inode gone and retries
        os.close(claim.fd)
        claim.fd = None


def _make_parents(out: Path) -> Path | None:
    """Create `out`'s missing parents; returns the topmost one created (removed again if the build fails)."""
    top = next((p for p in reversed(out.parents) if not p.exists()), None)
    out.parent.mkdir(parents=True, exist_ok=True)
    return top


def _remove_empty(leaf: Path, top: Path) -> None:
    for p in [leaf, *leaf.parents]:
        with contextlib.suppress(OSError):
            p.rmdir()
        if p == top:
            return


def _lock(claim: Claim) -> None:
    """flock `claim.lock_path` without waiting; ConfigError naming the holder if another build has it."""
    import fcntl

    while True:
        fd = os.open(claim.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"another build is writing engine directory {claim.out} right now ({holder}); wait "
                              "for it to finish, or build to another --out") from None
        if _same_file(fd, claim.lock_path):
            break
        os.close(fd)  # the previous holder unlinked it between our open and flock: take the new file
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {fsutil.host_tag()}, since {time.strftime('%H:%M:%S')}".encode())
    claim.fd = fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _sweep(out: Path) -> None:
    for p in fsutil.sweep_stale(out.parent):  # any of ours whose maker died, not only this out's
        log.info("removed %s, left by a build that was killed", p)
    for lock in out.parent.glob(".*.vdrt-lock"):
        if lock.name != f".{out.name}.vdrt-lock":
            _remove_if_unheld(lock)


def _remove_if_unheld(lock: Path) -> None:
    """A lock file nobody holds was left by a killed build: remove it (while holding it, as `_leave` does)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if _same_file(fd, lock):
            os.unlink(lock)
            log.info("removed %s, left by a build that was killed", lock)
    except OSError:
        pass  # held: a build is running
    finally:
        os.close(fd)


def _signing_key_ok() -> None:
    """A bad $VDRT_SIGNING_KEY fails before the build, not after it."""
    from vdrt.export import manifest as manifest_mod

    manifest_mod.signing_key_from_env()


def _sign_if_asked(engine_dir: Path) -> None:
    from vdrt.export import manifest as manifest_mod

    key = manifest_mod.signing_key_from_env()
    if key is not None:
        manifest_mod.sign_engine(engine_dir, key)


# ---------------------------------------------------------------- disk full / permission errors


@contextlib.contextmanager
def disk_errors(target: Path, what: str | None = None, fix: str | None = None) -> Iterator[None]:
    """Turn ENOSPC / EDQUOT / EACCES / EPERM / EROFS (also wrapped, e.g. in a compiler error) into one EngineError."""
    try:
        yield
    except VdrtError:
        raise  # already one clear line (an inner claim translated it)
    except Exception as e:
        err = disk_error(e)
        if err is None:
            raise
        raise EngineError(f"{what or f'writing the engine to {target}'} failed: {DISK_ERRORS[err.errno]} "
                          f"({err.filename or target}); {fix or _fix(err.errno)}") from e


def _fix(code: int) -> str:
    if code in (errno.ENOSPC, errno.EDQUOT):
        return ("free some space there (a build needs about twice its weights' size), or choose another --out; "
                "nothing was left behind")
    return "choose an --out in a folder you can write, or fix its permissions; nothing was left behind"


@contextlib.contextmanager
def building(out, force: bool | None = None) -> Iterator[Claim]:
    """`claim_out` for a whole build, with its compiler processes reaped if the build is killed (export/reaper.py)."""
    from vdrt.export.reaper import reaping

    with claim_out(out, force) as claim, reaping():
        yield claim
