"""The content-addressed build cache, and atomic publication of engine directories.

key = sha256 over (weights hash, model config, backend, precision, profile, signature,
toolchain versions, GPU, op choices, build options, format version). An entry is the engine
directory `$VDRT_CACHE/<key>/` (default `~/.cache/vdrt/engines`). A build holds a file lock
(`<key>.lock`, the filelock package) so that concurrent builds of one key give one result: the
second waits, then finds the entry. Builds go into a temporary sibling that is renamed into
place. An entry whose artifacts no longer match their hashes is reported and rebuilt.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from vdrt.errors import EngineError

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("VDRT_CACHE") or "~/.cache/vdrt/engines").expanduser()


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer: name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict(keep_vars=False).items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def entry_ok(entry: Path) -> bool:
    """True if `entry` is a complete engine whose artifacts match their hashes (warns when corrupted)."""
    if not (entry / "manifest.json").is_file():
        return False
    from vdrt.engines import manifest as mf

    try:
        mf.verify_artifacts(entry, mf.read(entry))
    except EngineError as e:
        log.warning("build cache entry %s is corrupted (%s); rebuilding it", entry.name, e)
        return False
    return True


def get_or_build(key: str, build_into: Callable[[Path], None], root: Path | None = None) -> tuple[Path, bool]:
    """The cache entry for `key`, built by `build_into(tmpdir)` if absent or corrupted; (entry, was_hit)."""
    from filelock import FileLock

    root = Path(root or cache_root())
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    if entry_ok(entry):
        log.info("build cache hit: %s", entry)
        return entry, True
    lock = FileLock(str(root / f"{key}.lock"))
    t0 = time.perf_counter()
    with lock:
        if time.perf_counter() - t0 > 1:
            log.info("waited %.1f s for a concurrent build of the same engine", time.perf_counter() - t0)
        if entry_ok(entry):
            return entry, True
        with atomic_dir(entry, replace_any=True) as tmp:
            build_into(tmp)
    return entry, False


@contextlib.contextmanager
def atomic_dir(target: Path, replace_any: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside `target`; on success it is renamed onto `target`.

    An existing `target` is replaced only if it is an engine directory, empty, or `replace_any`;
    anything else is refused, so a typo in --out cannot delete unrelated files.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(target, replace_any)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_replaceable(target: Path, replace_any: bool) -> None:
    if replace_any or not target.exists():
        return
    if target.is_dir() and ((target / "manifest.json").is_file() or not any(target.iterdir())):
        return
    raise EngineError(f"{target} exists and is not an engine directory; choose another --out or remove it")


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename `tmp` onto `target`; an old `target` is moved aside first and deleted after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rename(target, old / "d")
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def publish(entry: Path, out: Path) -> None:
    """Copy a cache entry to `out` atomically (temp dir next to `out`, then rename)."""
    if Path(out).resolve() == Path(entry).resolve():
        return
    with atomic_dir(out) as tmp:
        for f in Path(entry).iterdir():
            shutil.copy2(f, tmp / f.name)
