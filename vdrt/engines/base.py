"""The `Engine` protocol every backend implements, and what every compiled engine shares.

    engine(latents, timestep, context, **cond) -> prediction     # the eager denoiser's call signature
    engine.device, engine.dtype (its input dtype), engine.config (the model config), engine.manifest

The Pipeline and the parallel engine use exactly these; nothing is guessed with getattr. A compiled
backend subclasses `CompiledEngine` and implements `run(inputs) -> prediction`, where `inputs` are the
checked tensors in the manifest's input order, on the engine's device.

Every engine checks its inputs first (`check_inputs`): tensors (a timestep may be a number), real
floating dtypes (a timestep may be an integer; nothing complex or bool), the ranks of the call signature,
and finiteness (NaN/Inf named per input; one device sync for all of them, skipped while a CUDA graph is
being captured). Benchmarks switch it off: `vdrt.engines.base.set_input_checks(False)`, or
`VDRT_CHECK_INPUTS=0`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Protocol, runtime_checkable

import torch

from vdrt.engines.manifest import PRECISIONS, Signature
from vdrt.errors import EngineError, InputTypeError

RANKS = {"latents": (5,), "timestep": (0, 1), "context": (3,)}  # cond inputs: any rank, same rules otherwise
_CHECKS = [os.environ.get("VDRT_CHECK_INPUTS", "1") != "0"]
# activations of precisions that name their weights' format (TensorRT's quantized engines run bf16)
ACTIVATIONS = {**PRECISIONS, "fp8": torch.bfloat16, "int8": torch.bfloat16}


def set_input_checks(on: bool) -> None:
    """Engine input checks on (the default) or off (benchmarks; VDRT_CHECK_INPUTS=0 at start-up)."""
    _CHECKS[0] = bool(on)


def check_inputs(latents, timestep, context, cond: dict) -> None:
    """The protocol's inputs: tensors of real floating dtypes (an int timestep too) of the call's ranks, finite."""
    if not _CHECKS[0]:
        return
    named = {"latents": latents, "timestep": timestep, "context": context,
             **{k: v for k, v in cond.items() if v is not None}}
    tensors = {k: _checked_type(k, v) for k, v in named.items()}
    tensors = {k: t for k, t in tensors.items() if t is not None}
    if tensors and not _capturing():
        bad = torch.stack([(~torch.isfinite(t)).any() for t in tensors.values()]).cpu()  # one sync
        if bad.any():
            names = [k for k, b in zip(tensors, bad.tolist()) if b]
            raise EngineError(f"engine input(s) {names} hold NaN or Inf; check what produced them (the sampler's "
                              "latents, the text encoder's context)")


def _checked_type(name: str, v):
    if name == "timestep" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return torch.tensor(float(v))
    if not isinstance(v, torch.Tensor):
        raise InputTypeError(f"engine input {name} must be a torch.Tensor, not a {type(v).__name__}")
    if v.is_complex() or v.dtype == torch.bool or (not v.is_floating_point() and name != "timestep"):
        raise EngineError(f"engine input {name} has dtype {v.dtype}; it takes real floating point "
                          f"(float32 / bfloat16 / float16){' or an integer' if name == 'timestep' else ''}")
    ranks = RANKS.get(name)
    if ranks is not None and v.ndim not in ranks:
        shape = {"latents": "(B, C, F, H, W)", "timestep": "(B,) or a scalar", "context": "(B, T, text_dim)"}[name]
        raise EngineError(f"engine input {name} must be {shape}; got shape {tuple(v.shape)}")
    return v if v.is_floating_point() else None


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


@runtime_checkable
class Engine(Protocol):
    """A denoiser the Pipeline can run: TorchEngine, AOTIEngine, OnnxEngine, TensorRTEngine, ParallelEngine."""

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def config(self) -> Any: ...

    @property
    def manifest(self) -> dict: ...

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                 **cond) -> torch.Tensor: ...


@dataclasses.dataclass(frozen=True)
class DiffusersModelConfig:
    """The config of a denoiser built through the generic diffusers path (no vdrt family)."""

    class_name: str
    in_channels: int
    out_channels: int
    text_dim: int
    patch_size: tuple
    layout: str
    config: dict
    family: str = "diffusers"

    def to_dict(self) -> dict[str, Any]:
        return {"family": "diffusers", "class_name": self.class_name, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "text_dim": self.text_dim, "patch_size": list(self.patch_size),
                "layout": self.layout, "config": self.config}


def config_object(model_config: dict):
    """The model config object of a manifest: a vdrt family config, or DiffusersModelConfig."""
    if model_config.get("family") == "diffusers":
        kw = {k: v for k, v in model_config.items() if k != "family"}
        return DiffusersModelConfig(**{**kw, "patch_size": tuple(kw["patch_size"])})
    from vdrt import models

    return models.config_from_dict(model_config)


class CompiledEngine:
    """`engine(latents, timestep, context, **cond)`; `.manifest`, `.device`, `.dtype`, `.config`, `.path`."""

    def __init__(self, path, manifest: dict, device: torch.device):
        self.path, self.manifest, self.device = path, manifest, torch.device(device)
        self.signature = Signature.from_manifest(manifest)
        self.config = config_object(manifest["model_config"])

    @property
    def dtype(self) -> torch.dtype:
        precision = self.manifest["precision"]
        if precision not in ACTIVATIONS:  # the schema refuses it first; never a silent float32
            raise EngineError(f"engine precision {precision!r} is not one of {sorted(ACTIVATIONS)}; rebuild the engine")
        return ACTIVATIONS[precision]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @torch.inference_mode()
    def __call__(self, latents, timestep, context, **cond) -> torch.Tensor:
        check_inputs(latents, timestep, context, cond)
        inputs = self.signature.bind(self.device, latents, timestep, context, cond)
        return self.run(inputs)

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, backend={self.backend}, device={self.device}, dtype={self.dtype})"
