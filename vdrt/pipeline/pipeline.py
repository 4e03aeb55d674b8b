"""`vdrt.Pipeline`: a `GenerateRequest` -> conditioning -> THE sampling loop over an Engine -> decode -> output.

    pipe = vdrt.Pipeline.from_pretrained("vdrt-tiny")
    video = pipe("a red circle bouncing", num_frames=17, num_steps=4, seed=0)
    video.save("out.mp4")

    # diffusers' names work too (see vdrt.pipeline.call for the whole list)
    out = pipe(prompt="a red circle bouncing", num_inference_steps=4, guidance_scale=1.0, output_type="np")
    out.frames[0]          # float32 (T, H, W, 3) in [0, 1], as diffusers gives it

Each call builds (or takes) one `GenerateRequest`, resolves it against the model's defaults and
sizes before any step runs, then generates each video: conditioning built and encoded once,
moved to the device once (`CFGModel`), `vdrt.samplers.sample` with the pipeline's step hooks,
the codec's decode, and the output format asked for.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from vdrt.pipeline import conditioning, memory, native
from vdrt.pipeline import recipe as recipe_mod
from vdrt.pipeline.adapters import LoraLoaderMixin
from vdrt.pipeline.call import request_from_call
from vdrt.pipeline.outputs import package
from vdrt.pipeline.sources import Parts, describe, device_and_dtype, resolve
from vdrt.request import GenerateRequest

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Run:
    """One video's sampling state, built from a resolved request."""

    sampler: object
    generator: torch.Generator
    cond: conditioning.Conditioning
    model: object  # vdrt.samplers.CFGModel
    shape: tuple  # (C, F, h, w) latents
    start: int = 0


class Pipeline(LoraLoaderMixin):
    """prompt (+ image / video / mask) -> video; `hooks` are step hooks run by the sampling loop.

    LoRAs: diffusers' `load_lora_weights`, `set_adapters`, `fuse_lora`, ... (vdrt.pipeline.adapters).
    `recipe`: the few-step recipe every call runs (vdrt.pipeline.recipe), None when there is none.
    """

    def __init__(self, parts: Parts, recipe: str | None = None):
        self.engine, self.codec, self.text_encoder = parts.engine, parts.codec, parts.text_encoder
        self.image_encoder, self.info = parts.image_encoder, parts.info
        self.use_recipe(recipe)
        self.hooks: list = []
        self._progress: dict = {}

    @classmethod
    def from_pretrained(cls, source, dtype=None, device=None, cuda_graphs: bool = False, trust_pickle: bool = False,
                        torch_dtype=None, lora=None, recipe: str | None = None):
        """A preset, an embedded model, a diffusers-format directory, or an engine directory.

        `torch_dtype` is diffusers' name for `dtype` (default: bf16 on CUDA, fp32 on the CPU).
        `lora`: LoRA files (paths or (path, scale) pairs) fused into the denoiser (an engine: those it was built
        with). `recipe`: a few-step recipe name (vdrt.samplers.recipes), "none", or None for the one the model's
        own config or card names. Both are checked before any weight loads.
        """
        from vdrt.loader import check_dtype

        dtype, torch_dtype = (None if d is None else check_dtype(d, n) for d, n in ((dtype, "dtype"),
                                                                                (torch_dtype, "torch_dtype")))
        if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
            from vdrt.errors import ConfigError

            raise ConfigError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass one of them")
        _check_switches(cuda_graphs=cuda_graphs, trust_pickle=trust_pickle)
        device_and_dtype(device, dtype or torch_dtype)  # checked before the model is described or loaded
        recipe_mod.choose(recipe, describe(source))
        return cls(resolve(source, dtype=dtype or torch_dtype, device=device, cuda_graphs=cuda_graphs,
                           trust_pickle=trust_pickle, lora=lora), recipe=recipe)

    def use_recipe(self, name: str | None) -> None:
        """Run later calls with few-step recipe `name` ("none": none; None: the one the model names), e.g. after
        loading or unloading a step-distillation LoRA. Refused when it does not fit the model."""
        self.recipe = recipe_mod.choose(name, self.info)
        if self.recipe is not None:
            r = self.recipe
            log.info("recipe %s: fewstep at timesteps %s, shift %g, guidance %g%s", r.name, list(r.timesteps), r.shift,
                     r.guidance_scale, " (no CFG)" if not r.guidance.enabled else "")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def defaults(self):
        """The model's generation defaults, with the recipe's sampler, steps, guidance and shift."""
        return recipe_mod.defaults_with(self.info.defaults, self.recipe)

    @property
    def config(self):
        return self.engine.config

    @property
    def device(self) -> torch.device:
        return torch.device(self.engine.device)

    def to(self, device=None, dtype=None) -> "Pipeline":
        """Move the denoiser, codec and encoders (eager models; an engine stays where it was built)."""
        from vdrt.pipeline.moves import move_parts

        move_parts(self, *device_and_dtype(device or self.device, dtype))
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm options for the denoising bar, as in diffusers (e.g. disable=True)."""
        self._progress = dict(kwargs)

    # ------------------------------------------------------------------ the call

    def __call__(self, prompt=None, **kwargs):
        """A `GenerateRequest`, or its fields as keywords (vdrt's or diffusers' names); see vdrt.pipeline.call."""
        req, call = request_from_call(prompt, kwargs)
        recipe_mod.check_request(self.recipe, req, self.info)
        req = conditioning.fit_request(req, self.config, self.name).resolved(self.defaults, self.codec.geometry,
                                                                             self.name)
        memory.check(req, memory.plan_loaded(self))  # the model's limits and the memory, before any step
        _check_tensors(req, self.config)
        videos = [self.generate_one(req, p, k, call) for p in req.prompts for k in range(req.num_videos)]
        return package(videos, req, call, self.codec)

    def story(self, prompts, video=None, known_frames: int | None = None, seed: int = 0, **kwargs):
        """Story continuation: an iterator of Videos, one per prompt, each continuing the last with
        `mode="continue"` (vdrt.pipeline.story); `prompts` may be a generator fed as the story goes."""
        from vdrt.pipeline.story import chunks

        return chunks(self, prompts, video, known_frames, seed, **kwargs)

    def generate_one(self, req: GenerateRequest, prompt: str, index: int = 0, call=None) -> torch.Tensor:
        """Latents (1, C, F, h, w) of video `index` of `prompt` (seed + index), after the last step."""
        run = self._prepare(req, prompt, index)
        x = self._initial_latents(req, run)
        return self._denoise(x, run, req, call)

    # ------------------------------------------------------------------ preparation

    def _prepare(self, req: GenerateRequest, prompt: str, index: int) -> _Run:
        from vdrt.pipeline.encoders import encode_prompts
        from vdrt.samplers import CFGModel, Guidance

        seed = req.seed + index
        gen = req.generator if req.generator is not None else torch.Generator().manual_seed(seed)
        guide = Guidance(req.guidance, *req.guidance_range)
        sampler = self._sampler(req, req.generator if req.generator is not None else seed)
        cond = conditioning.build(req, self.codec)
        shape = self.codec.geometry.latent_shape(req.num_frames, req.height, req.width)
        pos, neg = encode_prompts(self.text_encoder, self.config.text_dim, prompt, req.negative_prompt,
                                  req.prompt_embeds, req.negative_prompt_embeds, guide.enabled)
        extra = native.inputs(self.config, cond, shape, self.codec, self.image_encoder, req.image_embeds)
        model = CFGModel(self.engine, pos, neg, guide, cond=extra, device=self.device, dtype=self.engine.dtype)
        start = sampler.start_index(req.num_steps, req.strength) if req.mode == "v2v" else 0
        return _Run(sampler, gen, cond, model, shape, start)

    def _sampler(self, req: GenerateRequest, generator):
        """The recipe's sampler (fewstep at its timesteps and shift), else the request's."""
        from vdrt import samplers

        if self.recipe is not None:
            return self.recipe.sampler(generator=generator)
        kw = {"shift": req.shift} if req.sampler != "fewstep" else {"timesteps": self.defaults.sampler_timesteps or None}
        return samplers.get(req.sampler, generator=generator, **{k: v for k, v in kw.items() if v is not None})

    def _initial_latents(self, req: GenerateRequest, run: _Run) -> torch.Tensor:
        noise = _noise(req, run)  # (1, C, F, h, w)
        if run.cond.init is None:
            return noise
        run.sampler.timesteps(req.num_steps)
        return run.sampler.add_noise(run.cond.init[None], noise, run.start)

    # ------------------------------------------------------------------ the loop

    def _denoise(self, x: torch.Tensor, run: _Run, req: GenerateRequest, call) -> torch.Tensor:
        from vdrt.samplers import sample

        x = x.to(self.device)
        paste = native.latent_paste(self.config, run.cond, run.sampler, x.shape, run.generator, self.device)
        if paste is not None:
            run.sampler.timesteps(req.num_steps)
            x = paste(run.start - 1, x)
        user = call.step_end(self, run.sampler) if call is not None else None
        bar = {"desc": "denoise", **self._progress, **({} if call is None or call.progress else {"disable": True})}
        return sample(run.model, x, run.sampler, req.num_steps, start=run.start, hooks=self.hooks,
                      on_step_end=_chain(paste, user), progress=bar)


def _check_tensors(req: GenerateRequest, config) -> None:
    """The request's tensors: real, floating, finite; image embeddings only for a model that takes them."""
    from vdrt.errors import ConfigError

    if req.image_embeds is not None and getattr(config, "image_dim", None) is None:
        raise ConfigError("image_embeds= is used only by models with an image encoder (Wan I2V); this model takes "
                          "none: drop it")
    for name in ("latents", "prompt_embeds", "negative_prompt_embeds", "image_embeds"):
        v = getattr(req, name)
        if v is None:
            continue
        t = torch.as_tensor(v)
        if t.is_complex() or not t.is_floating_point():
            raise ConfigError(f"{name} has dtype {t.dtype}; it takes real floating point (float32 / bfloat16)")
        if not torch.isfinite(t).all():
            raise ConfigError(f"{name} holds NaN or Inf; pass finite values")


def _check_switches(**switches) -> None:
    from vdrt.errors import InputTypeError

    for name, v in switches.items():
        if not isinstance(v, bool):
            raise InputTypeError(f"{name}={v!r} must be True or False")


def _noise(req: GenerateRequest, run: _Run) -> torch.Tensor:
    from vdrt.errors import ConfigError

    if req.latents is None:
        return torch.randn((1, *run.shape), generator=run.generator)
    x = torch.as_tensor(req.latents).float()
    x = x if x.dim() == 5 else x[None]
    if tuple(x.shape) != (1, *run.shape):
        raise ConfigError(f"latents of shape {tuple(x.shape)} do not fit: this request needs {(1, *run.shape)}")
    return x.cpu()


def _chain(*fns):
    fns = [f for f in fns if f is not None]
    if not fns:
        return None

    def run(i, x):
        for f in fns:
            y = f(i, x)
            x = x if y is None else y
        return x
    return run
