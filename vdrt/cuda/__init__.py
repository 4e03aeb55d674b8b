"""vdrt's CUDA C++ kernels (csrc/*.cu), compiled at run time with NVRTC and cached on disk.

    from vdrt.cuda import compile_file, load_kernel
    from vdrt.cuda.temporal_attention import temporal_attention   # registered as ops impl "cuda"
    from vdrt.cuda.quant_fp8 import quant_fp8

cuda-python (`pip install 'vdrt[cuda]'`) is imported only when something is compiled or
launched; importing this package needs neither it nor a GPU.
"""
from vdrt.cuda.nvrtc import (
    Compiled,
    CudaDriverError,
    Kernel,
    NvrtcError,
    available,
    cache_dir,
    compile_file,
    compile_source,
    csrc_path,
    load_kernel,
    nvrtc_version,
)

__all__ = [
    "Compiled",
    "CudaDriverError",
    "Kernel",
    "NvrtcError",
    "available",
    "cache_dir",
    "compile_file",
    "compile_source",
    "csrc_path",
    "load_kernel",
    "nvrtc_version",
]
