"""Compile CUDA C++ at run time with NVRTC (cuda-python), cache the binary on disk, launch on torch's stream.

    compiled = compile_source(src, "k.cu", options=["-DN=4"], arch="sm_90")   # bytes, cached
    kernel = load_kernel("temporal_attention.cu", "temporal_attention_bf16", options=[...])
    kernel(grid, block, args, arg_types, shared_mem=0)                       # current stream

The cache key is sha256 of (source, options, arch, NVRTC version); entries live under
$VDRT_CACHE/nvrtc or the user cache dir's vdrt/nvrtc (vdrt.fsutil.cache_dir) and are written atomically (tmp file + os.replace),
so concurrent processes never see a torn file. `sm_XX` gives a cubin, `compute_XX` PTX.
NVRTC needs no GPU: the CI compiles every csrc/*.cu on CPU machines.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os  # noqa: F401  (tests/kernels/test_nvrtc.py patches nvrtc.os.replace; the write is fsutil.atomic_path's)
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vdrt.errors import MissingDependency, VdrtError

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = ("-std=c++17",)


class NvrtcError(VdrtError):
    """A CUDA source failed to compile; the message holds NVRTC's full log."""

    def __init__(self, name: str, log_text: str):
        super().__init__(f"NVRTC failed to compile {name}; fix the source (compiler log below)\n{log_text}")
        self.log = log_text


class CudaDriverError(VdrtError):
    """A CUDA driver call failed (module load, launch)."""


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # cuda-python < 12.6 layout
        except ImportError as e:
            raise MissingDependency("cuda-python", "cuda") from e
    return nvrtc


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver
        except ImportError as e:
            raise MissingDependency("cuda-python", "cuda") from e
    return driver


def _ok(result, what: str):
    """Unpack a cuda-python (err, *values) tuple, raising on a non-success code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaDriverError(f"{what} failed: {err!r}")
    return values[0] if len(values) == 1 else tuple(values)


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library cuda-python loads; raises if none can be loaded."""
    try:
        return tuple(_ok(_nvrtc().nvrtcVersion(), "nvrtcVersion"))
    except (RuntimeError, OSError) as e:  # cuda-python installed, libnvrtc not found
        raise MissingDependency("libnvrtc (nvidia-cuda-nvrtc)", "cuda") from e


def available() -> bool:
    """True when cuda-python and an NVRTC library can be loaded (no GPU needed)."""
    try:
        nvrtc_version()
    except VdrtError as e:
        log.debug("NVRTC unavailable: %s", e)
        return False
    return True


def cache_dir() -> Path:
    from vdrt.fsutil import cache_dir as vdrt_cache

    return vdrt_cache("nvrtc")


def cache_key(source: str, options: Sequence[str], arch: str, version: tuple[int, int]) -> str:
    h = hashlib.sha256()
    for part in (source, "\0".join(options), arch, "%d.%d" % version):
        h.update(part.encode())
        h.update(b"\x01")
    return h.hexdigest()


@dataclass(frozen=True)
class Compiled:
    binary: bytes  # cubin for sm_XX, NUL-terminated PTX for compute_XX
    key: str
    arch: str
    from_cache: bool


def compile_source(source: str, name: str = "kernel.cu", options: Sequence[str] = (),
                   arch: str = "sm_90") -> Compiled:
    """Compile `source` for `arch` (sm_XX cubin or compute_XX PTX), through the disk cache."""
    opts = tuple(DEFAULT_OPTIONS) + tuple(options)
    key = cache_key(source, opts, arch, nvrtc_version())
    path = cache_dir() / f"{key}.{'cubin' if arch.startswith('sm_') else 'ptx'}"
    if path.is_file():
        return Compiled(path.read_bytes(), key, arch, from_cache=True)
    binary = _nvrtc_compile(source, name, (f"--gpu-architecture={arch}",) + opts)
    _write_atomic(path, binary)
    log.info("NVRTC compiled %s for %s (%d bytes) -> %s", name, arch, len(binary), path)
    return Compiled(binary, key, arch, from_cache=False)


def _nvrtc_compile(source: str, name: str, options: Sequence[str]) -> bytes:
    nvrtc = _nvrtc()
    prog = _ok(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            raise NvrtcError(name, _program_log(nvrtc, prog) or repr(err))
        cubin = any(o.startswith("--gpu-architecture=sm_") for o in options)
        get_size, get = ((nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN) if cubin
                         else (nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX))
        buf = b" " * _ok(get_size(prog), "nvrtc size")
        _ok(get(prog, buf), "nvrtc get binary")
        return buf
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _program_log(nvrtc, prog) -> str:
    size = _ok(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
    buf = b" " * size
    _ok(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
    return buf.rstrip(b"\0 ").decode(errors="replace")


def _write_atomic(path: Path, data: bytes) -> None:
    from vdrt.fsutil import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def csrc_path(filename: str) -> Path:
    """A file of the csrc/ folder (installed as the vdrt.csrc package)."""
    import vdrt.csrc

    return Path(vdrt.csrc.__file__).parent / filename


def compile_file(filename: str, options: Sequence[str] = (), arch: str = "sm_90") -> Compiled:
    return compile_source(csrc_path(filename).read_text(), filename, options, arch)


# ---------------------------------------------------------------- loading and launching


def current_arch(device=None) -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


class Kernel:
    """One `extern "C"` kernel of a compiled module, loaded per device on first launch."""

    def __init__(self, compiled: Compiled, name: str):
        self.compiled, self.name = compiled, name
        self._functions: dict[int, object] = {}
        self._modules: dict[int, object] = {}
        self._max_smem: dict[int, int] = {}

    def _function(self, device: int, shared_mem: int):
        driver = _driver()
        _make_current(device)
        if device not in self._functions:
            module = _ok(driver.cuModuleLoadData(self.compiled.binary), f"cuModuleLoadData({self.name})")
            self._modules[device] = module
            self._functions[device] = _ok(driver.cuModuleGetFunction(module, self.name.encode()),
                                          f"cuModuleGetFunction({self.name})")
        func = self._functions[device]
        if shared_mem > 48 * 1024 and self._max_smem.get(device, 0) < shared_mem:
            attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            _ok(driver.cuFuncSetAttribute(func, attr, shared_mem), "cuFuncSetAttribute")
            self._max_smem[device] = shared_mem
        return func

    def __call__(self, grid, block, args: Sequence, arg_types: Sequence, shared_mem: int = 0, device=None):
        """Launch on torch's current stream of `device` (so CUDA graphs capture it).

        args: tensors (passed as device pointers) and scalars; arg_types: the ctypes type of
        each (ctypes.c_void_p for tensors), in the kernel's parameter order.
        """
        import torch

        dev = torch.cuda.current_device() if device is None else torch.device("cuda", device).index
        func = self._function(dev, shared_mem)
        values = [t(a.data_ptr() if isinstance(a, torch.Tensor) else a) for a, t in zip(args, arg_types)]
        ptrs = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        stream = _driver().CUstream(torch.cuda.current_stream(dev).cuda_stream)
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        _ok(_driver().cuLaunchKernel(func, *grid, *block, shared_mem, stream, ctypes.addressof(ptrs), 0),
            f"cuLaunchKernel({self.name})")


_CONTEXTS: dict[int, object] = {}


def _make_current(device: int) -> None:
    """Make the device's primary context (the one torch uses) current on this thread."""
    driver = _driver()
    if device not in _CONTEXTS:
        _ok(driver.cuInit(0), "cuInit")
        dev = _ok(driver.cuDeviceGet(device), "cuDeviceGet")
        _CONTEXTS[device] = _ok(driver.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
    ctx = _CONTEXTS[device]
    if int(_ok(driver.cuCtxGetCurrent(), "cuCtxGetCurrent")) != int(ctx):
        _ok(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")


_KERNELS: dict[tuple[str, str], Kernel] = {}


def load_kernel(filename: str, name: str, options: Sequence[str] = (), arch: str | None = None) -> Kernel:
    """Kernel `name` of csrc/`filename` compiled for `arch` (default: the current GPU's), memoized."""
    compiled = compile_file(filename, options, arch or current_arch())
    if (compiled.key, name) not in _KERNELS:
        _KERNELS[(compiled.key, name)] = Kernel(compiled, name)
    return _KERNELS[(compiled.key, name)]
