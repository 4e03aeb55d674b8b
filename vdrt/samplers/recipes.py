"""Named few-step recipes: the sampler, timesteps, shift and guidance a step-distilled checkpoint was
distilled for, checked against the model they are used with.

    r = recipes.for_model("wan-4step-distill", den.config)   # ConfigError when it does not fit the model
    sampler = r.sampler(generator=seed)                      # FewStep at the recipe's timesteps
    ts = sampler.timesteps(r.num_steps)
    if r.guidance.enabled: ...                               # False at scale 1: never build the uncond branch

Where each number comes from is cited in docs/lora.md ("Few-step recipes"); `Recipe.source` names it.
A recipe checks the model family and conditioning it fits; it cannot tell a distilled checkpoint from its
base (both have the same weights' shapes), so running one on an undistilled model gives a blurry video.
"""
from __future__ import annotations

import dataclasses

from vdrt.errors import ConfigError
from vdrt.samplers.fewstep import FewStep
from vdrt.samplers.guidance import Guidance


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A few-step sampling recipe: FewStep at `timesteps` (model timesteps, before `shift`), CFG `guidance_scale`."""

    name: str
    description: str
    timesteps: tuple[float, ...]
    shift: float
    guidance_scale: float
    family: str  # the model family it fits
    t2v_only: bool  # distilled from a text-to-video model only: refused on a model with conditioning channels
    source: str  # where the numbers come from (full citation in docs/lora.md)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def guidance(self) -> Guidance:
        """CFG for this recipe; at scale 1.0 `.enabled` is False and no uncond branch is ever computed."""
        return Guidance(self.guidance_scale)

    def sampler(self, generator=None) -> FewStep:
        """A fresh FewStep sampler at this recipe's timesteps and shift (`generator`: int seed or Generator)."""
        return FewStep(timesteps=self.timesteps, shift=self.shift, generator=generator)

    def check(self, model_or_config) -> None:
        """Raise ConfigError when this recipe does not fit the model (a module with .config, or a config)."""
        problem = self.problem(model_or_config)
        if problem:
            hint = ", ".join(fitting(model_or_config)) or "none"
            raise ConfigError(f"recipe {self.name!r} does not fit this model: {problem}. Recipes that fit it: {hint}")

    def problem(self, model_or_config) -> str | None:
        """Why this recipe does not fit the model, or None when it does."""
        config = getattr(model_or_config, "config", model_or_config)
        family = getattr(config, "family", None)
        if family != self.family:
            kind = family or type(config).__name__
            return f"it is for {self.family} models ({self.description}), this is a {kind} model"
        if self.t2v_only and getattr(config, "cond_channels", 0):
            return (f"it was distilled for text-to-video only ({self.description}), this model takes "
                    f"{config.cond_channels} conditioning channels (image-to-video)")
        return None

    def check_overrides(self, num_steps=None, guidance_scale=None, sampler=None, shift=None) -> None:
        """Refuse a step count, guidance scale, sampler or shift that contradicts the recipe (None = not given)."""
        if num_steps is not None and num_steps != self.num_steps:
            raise ConfigError(f"recipe {self.name!r} runs {self.num_steps} steps (timesteps {list(self.timesteps)}); "
                              f"num_steps={num_steps} contradicts it: drop one of the two")
        if guidance_scale is not None and guidance_scale != self.guidance_scale:
            raise ConfigError(f"recipe {self.name!r} was distilled for guidance {self.guidance_scale:g}; "
                              f"guidance_scale={guidance_scale} contradicts it: drop one of the two")
        if sampler is not None and sampler != FewStep.name:
            raise ConfigError(f"recipe {self.name!r} samples with {FewStep.name}; sampler={sampler!r} contradicts it: "
                              "drop one of the two")
        if shift is not None and shift != self.shift:
            raise ConfigError(f"recipe {self.name!r} shifts its timesteps by {self.shift:g}; shift={shift} contradicts "
                              "it: drop one of the two")


_LIGHTX2V = "LightX2V configs/distill/wan21/wan_t2v_distill_lora_4step_cfg.json + WanStepDistillScheduler"
_FASTWAN = "FastVideo fastvideo/configs/pipelines/wan.py FastWan2_1_T2V_480P_Config + DmdStrategy"

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("wan-4step-distill",
           "Wan2.1 14B T2V / I2V step- and CFG-distilled: the LightX2V StepDistill-CfgDistill checkpoints and "
           "their 4-step LoRAs (Self-Forcing DMD)",
           timesteps=(1000.0, 750.0, 500.0, 250.0), shift=5.0, guidance_scale=1.0, family="wan", t2v_only=False,
           source=_LIGHTX2V),
    Recipe("fastwan-3step",
           "FastWan2.1-T2V-1.3B (FastVideo's DMD distillation of Wan2.1 T2V 1.3B; CausVid's bidirectional DMD list)",
           timesteps=(1000.0, 757.0, 522.0), shift=1.0, guidance_scale=1.0, family="wan", t2v_only=True,
           source=_FASTWAN),
)}


def names() -> list[str]:
    return sorted(RECIPES)


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(names())}")
    return RECIPES[name]


def for_model(name: str, model_or_config) -> Recipe:
    """The recipe `name`, checked against the model it will run with (what `--recipe` calls)."""
    recipe = get(name)
    recipe.check(model_or_config)
    return recipe


def fitting(model_or_config) -> list[str]:
    """Names of the recipes that fit a model."""
    return [name for name, recipe in sorted(RECIPES.items()) if recipe.problem(model_or_config) is None]
