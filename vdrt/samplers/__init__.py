"""Flow-matching samplers: each is one small class with `timesteps(num_steps)` and `step(x, v, i)`.

    sampler = vdrt.samplers.get("unipc", shift=5.0)   # "euler", "unipc", "dpm++2m", "fewstep"

Schedules and steps mirror diffusers' schedulers (see each module's docstring).
"""
from __future__ import annotations

from vdrt.errors import ConfigError
from vdrt.samplers.base import Sampler, SamplerConfig
from vdrt.samplers.dpm import DPMConfig, DPMSolver2M
from vdrt.samplers.euler import EulerConfig, FlowEuler
from vdrt.samplers.fewstep import FewStep, FewStepConfig
from vdrt.samplers.guidance import CFGModel, Guidance, cfg_combine
from vdrt.samplers.loop import ModelFunction, Step, StepHook, sample
from vdrt.samplers.unipc import UniPC, UniPCConfig

_REGISTRY: dict[str, type[Sampler]] = {c.name: c for c in (FlowEuler, UniPC, DPMSolver2M, FewStep)}


def names() -> list[str]:
    """Registered sampler names."""
    return list(_REGISTRY)


def get(name: str, **kwargs) -> Sampler:
    """A new sampler by name; kwargs are its config settings (shift=...) plus `generator=`."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown sampler {name!r}; known samplers: {names()}")
    return _REGISTRY[name](**kwargs)


__all__ = [
    "Sampler", "SamplerConfig", "FlowEuler", "EulerConfig", "UniPC", "UniPCConfig",
    "DPMSolver2M", "DPMConfig", "FewStep", "FewStepConfig", "Guidance", "cfg_combine",
    "CFGModel", "ModelFunction", "Step", "StepHook", "sample", "get", "names",
]
