"""AOTInductor backend: torch.export -> `aoti_compile_and_package` -> `model.pt2`.

Phases timed apart: export (torch.export with the profile's Dims), compile (Inductor codegen,
C++/Triton compilation and packaging into the .pt2). Inductor options can be passed as
`inductor_configs={...}` (e.g. {"max_autotune": True} on a GPU).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from vdrt.export.trace import export_program, narrow_profile

log = logging.getLogger(__name__)

ARTIFACT = "model.pt2"


def build_artifacts(target, example: tuple, workdir: Path, options: dict) -> tuple[list[str], dict, object]:
    """Write `model.pt2` into `workdir`; returns (artifact names, phase seconds, narrowed profile)."""
    from torch._inductor import aoti_compile_and_package

    times = {}
    t0 = time.perf_counter()
    ep = export_program(target, example)
    prof = narrow_profile(target, ep)
    times["export"] = time.perf_counter() - t0
    log.info("aoti: exported in %.1f s; compiling with Inductor (minutes for big models)", times["export"])
    t0 = time.perf_counter()
    aoti_compile_and_package(ep, package_path=str(Path(workdir) / ARTIFACT),
                             inductor_configs=dict(options.get("inductor_configs") or {}))
    times["compile"] = time.perf_counter() - t0
    log.info("aoti: compiled and packaged in %.1f s", times["compile"])
    return [ARTIFACT], times, prof
