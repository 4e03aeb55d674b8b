"""The `Engine` protocol every backend implements, and what every compiled engine shares.

    engine(latents, timestep, context, **cond) -> prediction     # the eager denoiser's call signature
    engine.device, engine.dtype (its input dtype), engine.config (the model config), engine.manifest

The Pipeline and the parallel engine use exactly these; nothing is guessed with getattr. A compiled
backend subclasses `CompiledEngine` and implements `run(inputs) -> prediction`, where `inputs` are the
checked tensors in the manifest's input order, on the engine's device.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import torch

from vdrt.engines.manifest import PRECISIONS, Signature


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
        return PRECISIONS.get(self.manifest["precision"], torch.float32)

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @torch.inference_mode()
    def __call__(self, latents, timestep, context, **cond) -> torch.Tensor:
        inputs = self.signature.bind(self.device, latents, timestep, context, cond)
        return self.run(inputs)

    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, backend={self.backend}, device={self.device}, dtype={self.dtype})"
