"""Files: atomic writes (a temporary sibling renamed onto the target), hashes, the cache folder, the git commit.

`sha256_chunks` hashes fixed-size pieces of a file on several threads (hashlib and file reads
release the GIL): engine loads verify multi-GB weight files this way, ~10x faster than one
sequential sha256 on a 16-core host.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is removed.

    THE atomic-write helper of vdrt: `suffix` ends the temporary's name (writers that choose a format by
    extension, like PyAV, need the target's own suffix there).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


CHUNK_BYTES = 64 << 20


def sha256_chunks(path: Path, chunk: int = CHUNK_BYTES, workers: int | None = None) -> list[str]:
    """sha256 of every `chunk`-byte piece of `path` (the last one shorter), hashed in parallel."""
    size = Path(path).stat().st_size
    offsets = list(range(0, size, chunk)) or [0]
    workers = max(1, min(len(offsets), workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda off: _sha256_range(path, off, chunk), offsets))


def _sha256_range(path: Path, offset: int, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while length > 0 and (block := f.read(min(length, 1 << 22))):
            h.update(block)
            length -= len(block)
    return h.hexdigest()


def git_commit(where: Path | None = None, short: int = 12) -> str:
    """The commit of the checkout holding `where` ($VDRT_COMMIT wins; "unknown" outside git)."""
    import subprocess

    if os.environ.get("VDRT_COMMIT"):
        return os.environ["VDRT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", f"--short={short}", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=where or Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cache_dir(*parts: str) -> Path:
    """vdrt's cache folder (created): $VDRT_CACHE if set, else the platform's user cache dir for vdrt."""
    root = os.environ.get("VDRT_CACHE")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("vdrt")
    path = Path(root).expanduser().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- temporaries a killed process leaves behind
# A temporary directory is named `.<name>.vdrt-<host>-<pid>-<start>-<random>.tmp` (`.old` for one moved aside):
# the next run on the same host removes those whose maker is gone (`sweep_stale`). `<start>` is the process'
# start time (Linux /proc), so a recycled pid is not taken for the dead maker.

OWNED_PATTERN = r"^\.(?P<name>.+)\.vdrt-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-(?P<start>\d+)-[^.]*\.(tmp|old)$"


def host_tag() -> str:
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def process_start(pid: int) -> int:
    """The start time of process `pid` in clock ticks since boot (Linux), 0 where unknown; -1 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return -1
    except OSError:
        return 0
    return -1 if fields[0] == b"Z" else int(fields[19])  # a zombie has exited


def process_alive(pid: int, start: int = 0) -> bool:
    """Is `pid` running (and, with `start`, the same process that started then)?"""
    if os.path.isdir("/proc/self"):
        now = process_start(pid)
        return now >= 0 and (start == 0 or now == 0 or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owned_tempdir(parent: Path, name: str, suffix: str = ".tmp") -> Path:
    """A new empty directory `parent/.<name>.vdrt-<host>-<pid>-<start>-<random><suffix>` (see above)."""
    pid = os.getpid()
    prefix = f".{name}.vdrt-{host_tag()}-{pid}-{max(process_start(pid), 0)}-"
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))


def sweep_stale(parent: Path, name: str | None = None) -> list[Path]:
    """Remove what dead processes of this host left in `parent` (only `name`'s temporaries, if given)."""
    import re
    import shutil

    gone = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return gone
    for e in entries:
        m = re.match(OWNED_PATTERN, e.name)
        if m is None or (name is not None and m["name"] != name) or m["host"] != host_tag():
            continue
        if not process_alive(int(m["pid"]), int(m["start"])):
            shutil.rmtree(e.path, ignore_errors=True) if e.is_dir(follow_symlinks=False) else _unlink(e.path)
            gone.append(Path(e.path))
    return gone


def _unlink(path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# ---------------------------------------------------------------- disk full / permission errors

DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "the file system is read-only"}


def disk_error(e: BaseException) -> OSError | None:
    """The OSError with a disk/permission errno in `e`'s cause chain, or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_ERRORS:
            return e
        text = str(e)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return OSError(errno.ENOSPC if "space" in text else errno.EDQUOT, text.splitlines()[-1][:200])
        e = e.__cause__ or e.__context__
    return None
