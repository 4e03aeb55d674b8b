"""A compiled Wan VAE decoder for an engine directory: AOTInductor packages of the decoder's causal chunks.

    from vdrt.models.wan_vae.load import load_wan_vae
    vae = load_wan_vae("Wan2.1-T2V-1.3B-Diffusers/vae", dtype="bfloat16", device="cuda")
    export_decoder(vae, "engines/wan-1.3b/vae", latent_size=(60, 104))
    # run time (no exporter needed): vdrt.models.wan_vae.compiled.load_compiled_decoder("engines/wan-1.3b/vae")

The directory (written in a temporary sibling, then renamed into place) holds:
- `decoder_first.pt2`: latent frame 0, (1, z, 1, h, w) -> (frame 0, *history);
- `decoder_chunk.pt2`: k latent frames and the history, (1, z, k, h, w), *history -> (4k frames, *history);
  a shorter last chunk is padded at run time (exact: the decoder is causal), so one shape serves every
  clip length;
- `weights.safetensors`: the constants of both packages (compiled with package_constants_in_so=False),
  read straight onto the device at load;
- `vae.json`: the VAE config, the fast-path options it was compiled with (dtype, layout, sub-pixel),
  the latent size and chunk, the history order and shapes, sha256 of every artifact, toolchain and GPU.
Both packages are static-shape: one latent size per directory (480p: 60 x 104).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import time
from pathlib import Path

import torch

import vdrt
from vdrt.errors import ConfigError
from vdrt.export.aoti import program_constants
from vdrt.export.cache import atomic_dir
from vdrt.export.manifest import artifact_records, device_info, toolchain
from vdrt.fsutil import atomic_path
from vdrt.models.wan_vae.compiled import FIRST, FORMAT, MANIFEST, STEP, WEIGHTS
from vdrt.models.wan_vae.fast import ChunkStep, FastWanVAE, plan_chunk
from vdrt.models.wan_vae.layers import RMSNorm

log = logging.getLogger(__name__)


def export_decoder(vae: FastWanVAE, out, latent_size: tuple[int, int], chunk: int | None = None,
                   inductor_configs: dict | None = None, force: bool = False) -> dict:
    """Compile `vae`'s decoder (its options: dtype, layout, sub-pixel) for latents of `latent_size` (h, w)
    into `out`; returns the manifest. `chunk`: latent frames per call (default: the options')."""
    h, w = latent_size
    if h < 1 or w < 1:
        raise ConfigError(f"latent_size={latent_size}: both sides must be >= 1 latent pixel")
    opts = dataclasses.replace(vae.opts, chunk=chunk or vae.opts.chunk, compile="none")  # compiled whole here
    k = plan_chunk(vae.config, opts, 1 + opts.chunk, h, w)
    z = vae._input(torch.randn(1, vae.config.z_dim, 1 + k, h, w))
    part, state = vae.model.part(False), {}
    with torch.no_grad():
        part(z[:, :, :1], state)
    keys = list(state)
    history = [vae._layout(state[key]) for key in keys]
    programs = {FIRST: (ChunkStep(part, None, keys_out=keys), (z[:, :, :1],)),
                STEP: (ChunkStep(part, keys), (z[:, :, 1:], *history))}
    configs = {**(inductor_configs or {}), "aot_inductor.package_constants_in_so": False}
    _check_out(Path(out), force)
    with atomic_dir(Path(out)) as tmp, _plain_norms(vae.model):
        times, constants = _compile_all(programs, tmp, configs)
        _save_constants(constants, tmp / WEIGHTS)
        m = _manifest(vae, opts, (h, w), k, keys, history, tmp, times)
        with atomic_path(tmp / MANIFEST) as f:
            f.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    log.info("compiled VAE decoder written to %s (chunk %d, %s)", out, k, times)
    return m


def _check_out(out: Path, force: bool) -> None:
    """An existing, non-empty `out` is replaced only with force (atomic_dir replaces whatever is there)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"{out} already exists; choose another directory or pass force=True to replace it")


@contextlib.contextmanager
def _plain_norms(model):
    """Norms without their torch.compile'd region (compile="regions") while exporting: Inductor fuses them."""
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    saved = [m.fused for m in norms]
    for m in norms:
        m.fused = None
    try:
        yield
    finally:
        for m, f in zip(norms, saved):
            m.fused = f


def _compile_all(programs: dict, workdir: Path, configs: dict) -> tuple[dict, dict]:
    """torch.export + AOTInductor for each program; returns (seconds per phase, the union of their constants)."""
    from torch._inductor import aoti_compile_and_package

    times, constants = {}, {}
    for name, (module, example) in programs.items():
        t0 = time.perf_counter()
        with torch.no_grad():
            ep = torch.export.export(module, example, strict=False)
        times[f"{name}_export_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        aoti_compile_and_package(ep, package_path=str(workdir / f"{name}.pt2"), inductor_configs=configs)
        times[f"{name}_compile_s"] = round(time.perf_counter() - t0, 2)
        for fqn, t in program_constants(ep).items():
            if fqn in constants and not torch.equal(constants[fqn], t):
                raise ConfigError(f"the two decoder programs disagree on constant {fqn!r}; cannot share weights")
            constants[fqn] = t
    return times, constants


def _save_constants(constants: dict, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in constants.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def _manifest(vae: FastWanVAE, opts, size, k: int, keys: list, history: list, workdir: Path, times: dict) -> dict:
    return {
        "format": FORMAT, "vdrt_version": vdrt.__version__, "backend": "aoti",
        "vae_config": vae.config.to_dict(), "options": dataclasses.asdict(opts),
        "latent_size": list(size), "chunk": k,
        "history": [{"key": key, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
                    for key, t in zip(keys, history)],
        "artifacts": artifact_records(workdir, [f"{FIRST}.pt2", f"{STEP}.pt2", WEIGHTS]),
        "toolchain": toolchain(), "device": device_info(vae.device),
        "build": {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **times},
    }
