"""What a GPU can do at best: measured ceilings for known GPUs, and a GEMM / copy probe for the others.

Known (DESIGN.md, measured 2026-11-29 on the H200, 2026-11-24 on the H100): dense GEMM 8192^3 in
bf16 (fp16 taken equal) and fp8, and device copy bandwidth. Any other device (another GPU, or the
CPU) is probed once per process instead of leaving the column empty:

- GEMM: an n^3 matmul in the benchmark's dtype (n = 8192 on CUDA, 1024 on the CPU), median of a few;
- copy: a clone of 1 GiB on CUDA (64 MiB on the CPU), read + write bytes per second.

    ceilings(device, "bf16")  # {"ceiling_tflops": 790.0, "ceiling_gbps": 4240.0, "ceiling_source": "H200 ..."}
"""
from __future__ import annotations

import functools
import logging
import time

import torch

log = logging.getLogger(__name__)

# GPU name fragment -> {precision: dense TFLOP/s, "copy_gbps": GB/s, "source": ...}
KNOWN = {
    "H200": {"bf16": 790.0, "fp16": 790.0, "fp8": 1260.0, "copy_gbps": 4240.0, "source": "measured 2026-11-29 (H200)"},
    "H100": {"bf16": 706.0, "fp16": 706.0, "fp8": 1263.0, "copy_gbps": 3000.0, "source": "measured 2026-11-24 (H100)"},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def ceilings(device: torch.device, precision: str) -> dict:
    """The ceilings of `device` at `precision`: known ones, else a probe's (cached per process)."""
    name = device_name(device)
    known = next((c for key, c in KNOWN.items() if key in name), None)
    if known is not None and precision in known:
        return {"ceiling_tflops": known[precision], "ceiling_gbps": known["copy_gbps"],
                "ceiling_source": known["source"]}
    tflops, gbps = probe(str(device), precision)
    return {"ceiling_tflops": tflops, "ceiling_gbps": gbps, "ceiling_source": f"probe ({name}, {precision})"}


@functools.lru_cache(maxsize=None)
def probe(device: str, precision: str) -> tuple[float, float]:
    """(GEMM TFLOP/s, copy GB/s) measured on `device` in `precision` (median of 3 after a warm-up)."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    n = 8192 if cuda else 1024
    dtype = DTYPES.get(precision, torch.float32)
    a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
    gemm = _median_s(lambda: a @ b, dev)
    src = torch.empty((1 << 30 if cuda else 1 << 26) // 4, device=dev)
    copy = _median_s(lambda: src.clone(), dev)
    tflops, gbps = 2 * n**3 / gemm / 1e12, 2 * src.numel() * 4 / copy / 1e9
    log.info("bench: probed %s %s: GEMM %.4g TFLOP/s, copy %.4g GB/s", device, precision, tflops, gbps)
    return tflops, gbps


def _median_s(fn, dev: torch.device, n: int = 3) -> float:
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2]


def rates(flops: float, ms: float, ceiling: dict) -> dict:
    """Achieved TFLOP/s of a call of `flops` taking `ms`, against the ceiling."""
    tflops = flops / (ms * 1e9)
    top = ceiling.get("ceiling_tflops")
    return {"tflop_per_step": flops / 1e12, "tflops": tflops, **ceiling,
            "pct_of_ceiling": None if not top else 100 * tflops / top}
