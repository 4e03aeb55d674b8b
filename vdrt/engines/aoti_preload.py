"""The lent GPU image's AOTInductor quirk: loading a package segfaults unless libstdc++ is preloaded.

On that image the compiled `.so` crashes in `std::regex` (in `parse_device_str`) as soon as it
is loaded, for any package, CPU or CUDA; starting the process with
`LD_PRELOAD=/lib/x86_64-linux-gnu/libstdc++.so.6` fixes it. A segfault cannot be caught, and
LD_PRELOAD only acts when a process starts, so the fix is decided before loading:

- `needs_preload(package)` says whether this process must be restarted with the preload. The
  mode comes from `VDRT_AOTI_PRELOAD`: `auto` (default: probe when torch is a CUDA build on
  Linux), `probe` (always probe), `1` (always preload), `0` (never). The probe loads the package
  in a fresh subprocess; a death by signal means "needs the preload". Its verdict is cached per
  environment (python, torch, LD_PRELOAD, kernel) in `aoti-preload.json` under vdrt's cache dir (`vdrt.fsutil.cache_dir`).
- `ensure_preload(package)` acts on it: the process re-executes itself (same `sys.orig_argv`)
  with LD_PRELOAD set, once (a guard variable stops loops). Re-exec is allowed in the vdrt CLI
  and wherever a program called `ensure_preload()` itself; elsewhere `guard(package)` raises
  an EngineError that says how to start the process, instead of letting it segfault.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from vdrt.errors import EngineError

log = logging.getLogger(__name__)

PRELOAD_LIB = "/lib/x86_64-linux-gnu/libstdc++.so.6"
ENV_MODE, ENV_LIB, ENV_DONE, ENV_REEXEC = "VDRT_AOTI_PRELOAD", "VDRT_AOTI_PRELOAD_LIB", "VDRT_AOTI_PRELOADED", \
    "VDRT_AOTI_REEXEC"
PROBE_CODE = ("import sys, torch\nfrom torch._inductor import aoti_load_package\n"
              "aoti_load_package(sys.argv[1], device_index=int(sys.argv[2]))\n")
_ALLOW_REEXEC = False


def preload_lib() -> str | None:
    lib = os.environ.get(ENV_LIB, PRELOAD_LIB)
    return lib if os.path.exists(lib) else None


def preload_active(env=None) -> bool:
    env = os.environ if env is None else env
    lib = preload_lib()
    entries = [e for e in env.get("LD_PRELOAD", "").replace(" ", ":").split(":") if e]
    return lib is not None and any(os.path.realpath(e) == os.path.realpath(lib) for e in entries)


def preload_env(env=None) -> dict:
    """A copy of `env` with the libstdc++ preload in front of LD_PRELOAD and the loop guard set."""
    env = dict(os.environ if env is None else env)
    if not preload_active(env):
        env["LD_PRELOAD"] = ":".join(e for e in (preload_lib(), env.get("LD_PRELOAD")) if e)
    env[ENV_DONE] = "1"
    return env


def mode() -> str:
    raw = os.environ.get(ENV_MODE, "auto").strip().lower()
    table = {"auto": "auto", "": "auto", "probe": "probe", "1": "always", "always": "always", "on": "always",
             "0": "never", "never": "never", "off": "never"}
    if raw not in table:
        raise EngineError(f"{ENV_MODE}={raw!r} is not understood; use auto, probe, 1 (always preload) or 0 (never)")
    return table[raw]


def needs_preload(package=None, device_index: int = -1) -> bool:
    """Must this process be restarted with the libstdc++ preload before loading AOTI packages?"""
    if sys.platform != "linux" or preload_lib() is None or preload_active():
        return False
    m = mode()
    if m in ("always", "never"):
        return m == "always"
    if m == "auto" and not _cuda_torch():
        return False  # the quirk was seen only on CUDA images; CPU machines load packages normally
    return package is not None and probe_crashes(package, device_index)


def _cuda_torch() -> bool:
    import torch

    return torch.version.cuda is not None


def probe_crashes(package, device_index: int = -1) -> bool:
    """Load `package` in a fresh subprocess (cached per environment): True if it dies by a signal."""
    key, cache = _fingerprint(), _cache_file()
    verdicts = _read_json(cache)
    if key in verdicts:
        return bool(verdicts[key])
    cmd = [sys.executable, "-c", PROBE_CODE, str(package), str(device_index)]
    log.info("probing whether AOTI packages load in this environment (once): %s", package)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    crashed = r.returncode < 0
    if r.returncode > 0:
        log.warning("AOTI load probe failed without crashing (exit %d): %s", r.returncode, r.stderr[-500:])
    verdicts[key] = crashed
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(verdicts, indent=1))
    return crashed


def _fingerprint() -> str:
    import torch

    parts = [sys.executable, torch.__version__, os.environ.get("LD_PRELOAD", ""), os.uname().release,
             PROBE_CODE]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _cache_file() -> Path:
    from vdrt.fsutil import cache_dir

    return cache_dir() / "aoti-preload.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s (%s)", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def ensure_preload(package=None, device_index: int = -1, force: bool = False) -> None:
    """Call first thing in a program that loads AOTI engines: re-executes it with the preload if needed.

    `force=True` preloads without probing (what VDRT_AOTI_PRELOAD=1 does). After this call,
    later engine loads in this process may re-execute it too, if a probe says so.
    """
    global _ALLOW_REEXEC
    _ALLOW_REEXEC = True
    if (force and preload_lib() and not preload_active()) or needs_preload(package, device_index):
        _reexec()


def guard(package, device_index: int = -1) -> None:
    """Before loading `package` in this process: re-exec (CLI / opted-in programs) or raise, never segfault."""
    if not needs_preload(package, device_index):
        return
    if reexec_allowed():
        _reexec()
    raise EngineError(f"loading AOTInductor packages crashes this environment's C++ runtime (a known image quirk); "
                      f"start Python with LD_PRELOAD={preload_lib()} or call "
                      "vdrt.engines.aoti.ensure_preload() first thing in your program")


def reexec_allowed() -> bool:
    if os.environ.get(ENV_REEXEC, "1") == "0":
        return False
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    in_cli = os.path.basename(sys.argv[0] or "") == "vdrt" or getattr(spec, "name", "") in ("vdrt.__main__",
                                                                                               "vdrt.cli")
    return _ALLOW_REEXEC or in_cli


def _reexec() -> None:
    if os.environ.get(ENV_DONE):
        raise EngineError(f"AOTInductor packages still crash with LD_PRELOAD={os.environ.get('LD_PRELOAD')}; "
                          "this environment cannot load them: use the onnx backend, or rebuild with this toolchain")
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    log.warning("restarting with LD_PRELOAD=%s so AOTInductor packages can load (see docs/engine-format.md)",
                preload_lib())
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], preload_env())
