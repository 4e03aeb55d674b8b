"""The content-addressed build cache, and atomic publication of engine directories.

key = sha256 over (weights hash, model config, backend, precision, profile, signature,
toolchain versions, GPU, op choices, build options, format version). An entry is the engine
directory `$VDRT_CACHE/<key>/` (default `~/.cache/vdrt/engines`). A build holds a file lock
(`<key>.lock`, the filelock package) so that concurrent builds of one key give one result: the
second waits, then finds the entry. Builds go into a temporary sibling named with the builder's
pid and start time, renamed into place; those left by killed builds are removed by the next
build (vdrt.fsutil.sweep_stale). An entry that fails any check of vdrt.engines.integrity (a
malformed or edited manifest, a corrupted, missing or unlisted file) is reported and rebuilt.
An unwritable or full cache folder is one EngineError line naming $VDRT_CACHE and --no-cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from vdrt.fsutil import owned_tempdir, sweep_stale

log = logging.getLogger(__name__)

CACHE_FIX = ("set $VDRT_CACHE to a folder with space that you can write, or build without the cache "
             "(vdrt build --no-cache, cache=False); nothing was left behind")


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
    """True if `entry` is a complete, unedited engine whose files match their hashes (warns when it is not)."""
    if not entry.exists() and not entry.is_symlink():
        return False
    if not (entry / "manifest.json").is_file():
        log.warning("build cache entry %s is corrupted (no manifest.json file); rebuilding it", entry.name)
        return False
    from vdrt.engines import integrity

    verdict = integrity.verify(entry, trusted_keys=(), first_only=True)
    if not verdict.ok:
        log.warning("build cache entry %s is corrupted (%s); rebuilding it", entry.name, verdict.problems[0])
    return verdict.ok


def get_or_build(key: str, build_into: Callable[[Path], None], root: Path | None = None) -> tuple[Path, bool]:
    """The cache entry for `key`, built by `build_into(tmpdir)` if absent or corrupted; (entry, was_hit)."""
    from filelock import FileLock

    from vdrt.export.claim import disk_errors

    root = Path(root or cache_root())
    with disk_errors(root, f"writing the build cache {root}", CACHE_FIX):
        root.mkdir(parents=True, exist_ok=True)
        _sweep(root)
        entry = root / key
        if entry_ok(entry):
            log.info("build cache hit: %s", entry)
            return entry, True
        t0 = time.perf_counter()
        with FileLock(str(root / f"{key}.lock")):
            if time.perf_counter() - t0 > 1:
                log.info("waited %.1f s for a concurrent build of the same engine", time.perf_counter() - t0)
            if entry_ok(entry):
                return entry, True
            with atomic_dir(entry) as tmp:
                build_into(tmp)
    return entry, False


def _sweep(root: Path) -> None:
    for p in sweep_stale(root):
        log.info("removed %s, left in the build cache by a build that was killed", p)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `target`; on success it replaces `target` (whatever it was)."""
    target = Path(target)
    tmp = owned_tempdir(target.parent, target.name)
    try:
        yield tmp
        old = None
        if target.exists() or target.is_symlink():
            old = owned_tempdir(target.parent, target.name, suffix=".old")
            os.rename(target, old / "d")
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(entry: Path, out: Path) -> None:
    """Copy a cache entry to `out` atomically (claimed; a temporary dir next to `out`, then rename)."""
    from vdrt.export.claim import claim_out

    with claim_out(out) as claim:
        claim.publish(entry)
