"""`Pipeline.__call__`'s keywords -> a `GenerateRequest` plus the options of the call itself.

vdrt's names and diffusers' names are both accepted (not both for one field):

| vdrt            | diffusers                  |
| num_steps       | num_inference_steps        |
| guidance        | guidance_scale             |
| num_videos      | num_videos_per_prompt      |
| seed            | generator (a torch.Generator) |

plus, shared: prompt (a string or a list), negative_prompt, num_frames, height, width, latents,
prompt_embeds, negative_prompt_embeds, output_type ("video" (default: a `vdrt.Video`), "np",
"pil", "pt", "latent"). Options of the call: `callback_on_step_end(pipe, i, t, kwargs) -> dict`
with `callback_on_step_end_tensor_inputs` (["latents"]), `return_dict`, and vdrt's `progress`.
Anything else is refused with the list of known names.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from vdrt.errors import ConfigError
from vdrt.request import GenerateRequest

ALIASES = {"num_inference_steps": "num_steps", "guidance_scale": "guidance", "num_videos_per_prompt": "num_videos"}
TENSOR_INPUTS = ("latents",)


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """What a call asks beside the generation itself."""

    progress: bool = True
    callback_on_step_end: Callable | None = None
    callback_on_step_end_tensor_inputs: tuple = ("latents",)
    return_dict: bool = True
    output_type_given: bool = False  # the caller chose an output_type (diffusers-style return)

    def __post_init__(self):
        if self.callback_on_step_end is not None and not callable(self.callback_on_step_end):
            raise ConfigError("callback_on_step_end must be callable: fn(pipe, step, timestep, callback_kwargs) -> dict")
        bad = [n for n in self.callback_on_step_end_tensor_inputs if n not in TENSOR_INPUTS]
        if bad:
            raise ConfigError(f"callback_on_step_end_tensor_inputs {bad} are not available; choose from "
                              f"{list(TENSOR_INPUTS)}")

    def step_end(self, pipe, sampler):
        """The loop's on_step_end calling `callback_on_step_end` as diffusers does (None when there is none)."""
        fn = self.callback_on_step_end
        if fn is None:
            return None

        def on_step_end(i, x):
            t = sampler.sigma(i) * sampler.config.num_train_timesteps
            out = fn(pipe, i, t, {k: x for k in self.callback_on_step_end_tensor_inputs}) or {}
            return out.get("latents")
        return on_step_end


def request_from_call(prompt, kwargs: dict) -> tuple[GenerateRequest, CallOptions]:
    """Split `pipe(prompt, **kwargs)` into the request and the call's options."""
    opts = _options(kwargs)
    if isinstance(prompt, GenerateRequest):
        if kwargs:
            raise ConfigError(f"pipe(request) takes no other generation arguments (got {sorted(kwargs)}); "
                              "use request.replace(...)")
        return prompt, opts
    fields = {f.name for f in dataclasses.fields(GenerateRequest)} - {"out", "force"}
    given = {"prompt": "" if prompt is None else prompt}
    for key, value in kwargs.items():
        name = ALIASES.get(key, key)
        if name not in fields:
            known = sorted(fields | set(ALIASES) | {f.name for f in dataclasses.fields(CallOptions)} - {"output_type_given"})
            raise ConfigError(f"unknown argument {key!r}; Pipeline() takes {known}")
        if name in given and name != "prompt":
            other = next(k for k in kwargs if ALIASES.get(k, k) == name and k != key)
            raise ConfigError(f"{other} and {key} name the same setting; pass one of them")
        given[name] = value
    if given.get("seed") is None:
        given["seed"] = 0
    return GenerateRequest(**given), dataclasses.replace(opts, output_type_given="output_type" in given)


def _options(kwargs: dict) -> CallOptions:
    names = [f.name for f in dataclasses.fields(CallOptions) if f.name != "output_type_given"]
    got = {k: kwargs.pop(k) for k in names if k in kwargs}
    if "callback_on_step_end_tensor_inputs" in got:
        got["callback_on_step_end_tensor_inputs"] = tuple(got["callback_on_step_end_tensor_inputs"])
    return CallOptions(**got)
