"""Running a compiled Wan VAE decoder that `vdrt.export.vae.export_decoder` wrote (two AOTInductor packages
sharing one weights file; see that module for the directory). Nothing here imports the exporter.

    dec = load_compiled_decoder("engines/wan-1.3b/vae")      # checks sha256, format, GPU arch
    video = dec.decode(z)                                     # (1, 16, F, 60, 104) -> (1, 3, 4F-3, 480, 832)
    for frames in dec.frames_stream(z): writer.write(frames)  # uint8 (t, H, W, 3) chunks, overlapped
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import torch

from vdrt.errors import ConfigError, EngineError
from vdrt.models.wan_vae.config import WanVAEConfig
from vdrt.models.wan_vae.fast import FastOptions, param_layout, run_causal, uint8_stream
from vdrt.models.wan_vae.model import check_latents

log = logging.getLogger(__name__)

FORMAT = "vdrt-wan-vae-decoder/1"
MANIFEST = "vae.json"
FIRST, STEP = "decoder_first", "decoder_chunk"
WEIGHTS = "weights.safetensors"
REQUIRED = ("format", "backend", "vae_config", "options", "latent_size", "chunk", "history", "artifacts", "device")


def read_manifest(path) -> dict:
    """Parse and check `path/vae.json` (format and keys); no artifact is touched."""
    from vdrt.engines.manifest import verify_artifacts

    path = Path(path)
    try:
        m = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{path / MANIFEST} is unreadable ({e}); is {path} a compiled VAE decoder directory?") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise EngineError(f"{path / MANIFEST}: format {m.get('format') if isinstance(m, dict) else None!r} is not "
                          f"{FORMAT!r}; rebuild it with vdrt.export.vae.export_decoder")
    missing = [k for k in REQUIRED if k not in m]
    if missing or set(m["artifacts"]) != {f"{FIRST}.pt2", f"{STEP}.pt2", WEIGHTS}:
        raise EngineError(f"{path / MANIFEST} lacks {missing or 'its three artifacts'}; rebuild the directory")
    verify_artifacts(path, m)
    return m


class CompiledDecoder:
    """The decoder of a compiled VAE directory: decode / decode_stream / frames_stream like FastWanVAE's."""

    def __init__(self, path, device=None):
        from vdrt.engines.aoti_preload import guard
        from vdrt.engines.manifest import check_device

        path = Path(path)
        m = self.manifest = read_manifest(path)
        self.device = torch.device(device or ("cuda" if m["device"].get("type") == "cuda" else "cpu"))
        check_device(m, self.device)
        self.config = WanVAEConfig.from_dict(m["vae_config"])
        self.opts = FastOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in m["options"].items()})
        self.latent_size, self.chunk = tuple(m["latent_size"]), int(m["chunk"])
        index = (self.device.index or 0) if self.device.type == "cuda" else -1
        from torch._inductor import aoti_load_package

        self.programs = {}
        for name in (FIRST, STEP):
            guard(path / f"{name}.pt2", index)
            self.programs[name] = aoti_load_package(str(path / f"{name}.pt2"), device_index=index)
        self._weights = load_shared_constants(list(self.programs.values()), path / WEIGHTS, self.device,
                                              self.opts.channels_last)
        log.info("compiled VAE decoder from %s: latents %s, %d frames per call", path, self.latent_size, self.chunk)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last_3d if self.opts.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def decode_stream(self, z: torch.Tensor) -> Iterator[torch.Tensor]:
        """(1, z, F, h, w) -> chunks (1, 3, t, 8h, 8w) in [-1, 1], in time order."""
        check_latents(self.config, z)
        if z.shape[0] != 1 or tuple(z.shape[3:]) != self.latent_size:
            raise ConfigError(f"this compiled VAE decoder takes latents (1, {self.config.z_dim}, F, "
                              f"{self.latent_size[0]}, {self.latent_size[1]}), got {tuple(z.shape)}; compile one "
                              "for this size (vdrt.export.vae.export_decoder) or decode with the eager VAE")
        x = self._layout(z.to(self.device, self.opts.torch_dtype))
        f, k = z.shape[2], self.chunk
        bounds = [(0, 1)] + [(a, min(a + k, f)) for a in range(1, f, k)]

        def first(chunk):
            out, *history = self.programs[FIRST](chunk)
            return out, history
        for out in run_causal(first, self.programs[STEP], x, bounds, self._layout, pad=k):
            yield out.clamp(-1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.decode_stream(z)), 2)

    def frames_stream(self, z: torch.Tensor) -> Iterator[torch.Tensor]:
        """uint8 (t, H, W, 3) host chunks, each copied while the next chunk decodes (see FastWanVAE)."""
        return uint8_stream(self.decode_stream(z))


def load_shared_constants(programs: list, path: Path, device: torch.device, channels_last: bool) -> dict:
    """Read the weights once onto `device`, in the layout they were compiled with (safetensors stores them
    contiguous; the packages index channels-last weights as such), and hand them to every package."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as f:
        tensors = {k: param_layout(f.get_tensor(k), channels_last) for k in f.keys()}
    for program in programs:
        wanted = list(program.get_constant_fqns())
        missing = sorted(set(wanted) - set(tensors))
        if missing:
            raise EngineError(f"{path} lacks {len(missing)} constant(s) the compiled decoder needs, e.g. "
                              f"{missing[:3]}; the directory is inconsistent, rebuild it")
        try:
            program.load_constants({k: tensors[k] for k in wanted}, check_full_update=True, user_managed=True)
        except TypeError:  # older torch: no user_managed keyword (the loader then copies)
            program.load_constants({k: tensors[k] for k in wanted}, check_full_update=True)
    return tensors


def load_compiled_decoder(path, device=None) -> CompiledDecoder:
    return CompiledDecoder(path, device)
