"""Which few-step recipe a generation runs, and what it sets (the recipes themselves: vdrt.samplers.recipes).

The recipe is the one asked for (`--recipe NAME`, `Pipeline.from_pretrained(..., recipe=NAME)`,
`pipe.use_recipe(NAME)`), else the one the model's own files name (`Defaults.recipe`: a card's
`defaults.recipe`, a diffusers config.json's `"recipe"` key, an engine's build options); `"none"` asks for
none. It is checked against the model's config (read from JSON, before any weight loads), and then sets
the sampler (fewstep at its timesteps and shift), the step count and the guidance; a request that sets
one of those otherwise is refused, not silently overridden.
"""
from __future__ import annotations

from vdrt.request import Defaults, GenerateRequest
from vdrt.samplers import recipes
from vdrt.samplers.recipes import Recipe

NONE = "none"  # --recipe none: sample without the recipe the model names


def choose(asked: str | None, info) -> Recipe | None:
    """The recipe for a model (`info`: a sources.ModelInfo): `asked`, else the model's own; refused if it does not
    fit the model."""
    name = info.defaults.recipe if asked is None else asked
    if name is None or name == NONE:
        return None
    return recipes.for_model(name, info.config)


def defaults_with(defaults: Defaults, recipe: Recipe | None) -> Defaults:
    """The model's defaults with the recipe's sampler, steps, guidance and shift."""
    if recipe is None:
        return defaults
    return defaults.replace(sampler="fewstep", num_steps=recipe.num_steps, guidance=recipe.guidance_scale,
                            shift=recipe.shift, sampler_timesteps=recipe.timesteps)


def check_request(recipe: Recipe | None, req: GenerateRequest, info) -> None:
    """Refuse explicit settings that contradict the recipe (naming it when it is the model's own choice)."""
    if recipe is None:
        return
    from vdrt.errors import ConfigError

    try:
        recipe.check_overrides(num_steps=req.num_steps, guidance_scale=req.guidance, sampler=req.sampler,
                               shift=req.shift)
    except ConfigError as e:
        if recipe.name != info.defaults.recipe:
            raise
        raise ConfigError(f"{e} ({info.name} names this recipe itself; recipe='{NONE}' / --recipe {NONE} "
                          "samples without it)") from None
