"""AOTInductor backend: torch.export -> `aoti_compile_and_package` -> `model.pt2` (+ `weights.safetensors`).

Phases timed apart: export (torch.export with the profile's Dims), compile (Inductor codegen,
C++/Triton compilation and packaging into the .pt2), serialize (the weights file). Inductor
options can be passed as `inductor_configs={...}` (e.g. {"max_autotune": True} on a GPU).

Weights (`aoti_weights=`):
- "external" (default): the package is compiled with `aot_inductor.package_constants_in_so=False`
  and the exported program's parameters, buffers and constants are written to
  `weights.safetensors`; the runtime reads them straight onto the device and hands them over with
  `load_constants` (no pickle, no multi-GB `.so` to relocate, no asm build of the weights).
- "in_so": the weights are linked into the package's `.so` (Inductor's default).

Op choice: the elementwise ops left on "auto" (norms, adaLN modulation, QK-norm + rope) are
exported in their torch form, so Inductor fuses them with their neighbours; attention ops keep
their automatic (kernel) choice. Measured on the H100 (Wan-1.3B, 480p x 81f, bf16): AOTI with
our adaLN/rope kernels inside 543.2 ms/step, with the torch forms 524.5 ms (torch.compile 524.2).
An op forced with `vdrt.ops.use(...)` is left as forced, so kernels can still be compiled in.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from vdrt import ops
from vdrt.errors import ConfigError
from vdrt.export.trace import export_program, narrow_profile
from vdrt.fsutil import atomic_path

log = logging.getLogger(__name__)

ARTIFACT = "model.pt2"
WEIGHTS = "weights.safetensors"
WEIGHT_MODES = ("external", "in_so")
FUSED_BY_INDUCTOR = ("layer_norm", "rms_norm", "adaln_modulate", "rope_qk_norm")


def inductor_choices() -> dict[str, str]:
    """{op: "torch"} for the elementwise ops still on "auto": Inductor fuses their torch form."""
    return {op: "torch" for op in FUSED_BY_INDUCTOR if ops.get_choice(op) == "auto"}


def build_artifacts(target, example: tuple, workdir: Path, options: dict) -> tuple[list[str], dict, object]:
    """Write the artifacts into `workdir`; returns (artifact names, phase seconds, narrowed profile)."""
    from torch._inductor import aoti_compile_and_package

    mode = options.get("aoti_weights", "external")
    if mode not in WEIGHT_MODES:
        raise ConfigError(f"aoti_weights={mode!r} is not one of {WEIGHT_MODES}")
    configs = dict(options.get("inductor_configs") or {})
    if mode == "external":
        configs.setdefault("aot_inductor.package_constants_in_so", False)
    times = {}
    t0 = time.perf_counter()
    with ops.use(**inductor_choices()):
        ep = export_program(target, example)
    prof = narrow_profile(target, ep)
    times["export"] = time.perf_counter() - t0
    log.info("aoti: exported in %.1f s; compiling with Inductor (minutes for big models)", times["export"])
    t0 = time.perf_counter()
    aoti_compile_and_package(ep, package_path=str(Path(workdir) / ARTIFACT), inductor_configs=configs)
    times["compile"] = time.perf_counter() - t0
    log.info("aoti: compiled and packaged in %.1f s", times["compile"])
    if mode == "in_so":
        return [ARTIFACT], times, prof
    t0 = time.perf_counter()
    nbytes = save_constants(ep, Path(workdir) / WEIGHTS)
    times["serialize"] = time.perf_counter() - t0
    log.info("aoti: wrote %s (%.2f GB) in %.1f s", WEIGHTS, nbytes / 1e9, times["serialize"])
    return [ARTIFACT, WEIGHTS], times, prof


def program_constants(ep) -> dict[str, torch.Tensor]:
    """Every tensor the compiled package may ask for by FQN: parameters, buffers, lifted constants."""
    found = {**ep.state_dict, **ep.constants}
    return {k: v for k, v in found.items() if isinstance(v, torch.Tensor)}


def save_constants(ep, path: Path) -> int:
    """Write the program's constants as safetensors.

    Each tensor is copied to host memory with its own contiguous storage (safetensors refuses
    shared storage, and a 14B model must not be duplicated on the GPU).
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in program_constants(ep).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return sum(t.numel() * t.element_size() for t in tensors.values())
