"""`vdrt.Pipeline`: prompt (+ image / video / mask) -> sampler loop over an engine -> `vdrt.Video`.

    pipe = vdrt.Pipeline.from_pretrained("vdrt-tiny")
    video = pipe("a red circle bouncing", num_frames=17, num_steps=4, seed=0)
    video.save("out.mp4")
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from vdrt import conditioning
from vdrt.assemble import Parts, assemble
from vdrt.errors import ConfigError, SamplingError

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """Everything one sampling run needs, resolved from the call's arguments and the defaults."""

    num_steps: int
    guidance: object  # vdrt.samplers.guidance.Guidance
    sampler: object
    generator: torch.Generator
    cond: conditioning.Conditioning
    context: torch.Tensor  # (B, L, D): cond, or [cond; uncond] when guidance is used
    extra: dict
    start: int = 0


class Pipeline:
    def __init__(self, parts: Parts):
        self.engine, self.codec, self.text_encoder = parts.engine, parts.codec, parts.text_encoder
        self.image_encoder, self.defaults, self.name = parts.image_encoder, parts.defaults, parts.name

    @classmethod
    def from_pretrained(cls, source, dtype=None, device=None, cuda_graphs: bool = False, trust_pickle: bool = False):
        """A preset, an embedded model, a diffusers-format directory, or an engine directory."""
        return cls(assemble(source, dtype=dtype, device=device, cuda_graphs=cuda_graphs, trust_pickle=trust_pickle))

    @property
    def config(self):
        return self.engine.config

    @property
    def device(self) -> torch.device:
        return torch.device(self.engine.device)

    def __call__(self, prompt: str = "", num_frames=None, height=None, width=None, num_steps=None, guidance=None,
                 seed: int = 0, sampler=None, image=None, video=None, mask=None, mode: str = "t2v",
                 strength: float = 0.8, known_frames=None, negative_prompt: str = "", prompt_embeds=None,
                 negative_prompt_embeds=None, image_embeds=None, guidance_range=(0.0, 1.0), shift=None,
                 progress: bool = True, fps=None):
        from vdrt.io import Video, frames_from_float

        d = self.defaults.replace(num_frames=num_frames, height=height, width=width, num_steps=num_steps,
                                  guidance=guidance, sampler=sampler, shift=shift, fps=fps)
        _check_numbers(d, strength, mode)
        d.check_size(self.name)
        req = conditioning.Request(mode, d.num_frames, d.height, d.width, image, video, mask, known_frames)
        shape = self.codec.geometry.latent_shape(d.num_frames, d.height, d.width)
        run = self._prepare(d, req, shape, seed, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds,
                            image_embeds, guidance_range, strength)
        x = self._initial_latents(shape, run)
        x = self._denoise(x, run, progress)
        frames = frames_from_float(self.codec.decode(x[0]).float().cpu())
        return Video(frames, fps=d.fps)

    # ------------------------------------------------------------------ preparation

    def _prepare(self, d, req, shape, seed, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, image_embeds,
                 guidance_range, strength) -> _Run:
        from vdrt import samplers
        from vdrt.samplers.guidance import Guidance

        gen = torch.Generator().manual_seed(seed)
        guide = Guidance(d.guidance, *guidance_range)
        kw = {"shift": d.shift} if d.sampler != "fewstep" else {"timesteps": d.sampler_timesteps or None}
        sampler_obj = samplers.get(d.sampler, generator=seed, **{k: v for k, v in kw.items() if v is not None})
        cond = conditioning.build(req, self.codec)
        context = self._context(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, guide.scale != 1.0)
        extra = self._native_inputs(cond, shape, image_embeds)
        start = sampler_obj.start_index(d.num_steps, strength) if req.mode == "v2v" else 0
        return _Run(d.num_steps, guide, sampler_obj, gen, cond, context, extra, start)

    def _context(self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, use_cfg: bool):
        from vdrt.encoders import as_context

        text_dim = self.config.text_dim
        if prompt_embeds is not None:
            pos = as_context(torch.as_tensor(prompt_embeds).float(), text_dim)
        else:
            pos = self._encode_text(prompt)
        if not use_cfg:
            return pos
        if negative_prompt_embeds is not None:
            neg = as_context(torch.as_tensor(negative_prompt_embeds).float(), text_dim)
        else:
            neg = self._encode_text(negative_prompt, negative=True) if prompt_embeds is None else torch.zeros_like(pos)
        return torch.cat(_same_length(pos, neg))

    def _encode_text(self, text: str, negative: bool = False) -> torch.Tensor:
        if self.text_encoder is None:
            raise ConfigError("this model has no text encoder; pass prompt_embeds= (CLI: --prompt-embeds FILE)")
        return self.text_encoder([text], **({"allow_empty": True} if negative and _accepts_empty(self.text_encoder)
                                            else {})).float().cpu()

    def _native_inputs(self, cond, shape, image_embeds) -> dict:
        """Extra denoiser inputs for models with conditioning channels (vdrt-tiny, Wan I2V)."""
        from vdrt import native

        return native.inputs(self.config, cond, shape, self.codec, self.image_encoder, image_embeds)

    def _initial_latents(self, shape, run: _Run) -> torch.Tensor:
        noise = torch.randn((1, *shape), generator=run.generator)  # (1, C, F, h, w)
        if run.cond.init is None:
            return noise
        run.sampler.timesteps(run.num_steps)
        return run.sampler.add_noise(run.cond.init[None], noise, run.start)

    # ------------------------------------------------------------------ the loop

    def _denoise(self, x: torch.Tensor, run: _Run, progress: bool) -> torch.Tensor:
        from vdrt.native import replaces_latents
        from vdrt.samplers import CFGModel, sample

        replace = replaces_latents(self.config, run.cond)
        known_noise = torch.randn(x.shape, generator=run.generator).to(self.device) if replace else None
        x = x.to(self.device)
        neg = run.context[1:] if run.guidance.enabled else None
        model = CFGModel(self.engine, run.context[:1], neg, run.guidance, cond=run.extra, device=self.device,
                         dtype=getattr(self.engine, "dtype", torch.float32))
        paste = None
        if replace:
            known, keep = run.cond.known.to(self.device), run.cond.keep.to(self.device)
            paste = lambda i, x: keep * run.sampler.add_noise(known[None], known_noise, i + 1) + (1 - keep) * x  # noqa: E731
            run.sampler.timesteps(run.num_steps)
            x = keep * run.sampler.add_noise(known[None], known_noise, run.start) + (1 - keep) * x
        return sample(model, x, run.sampler, run.num_steps, start=run.start, on_step_end=paste,
                      progress={"disable": not progress, "desc": "denoise"})


def _same_length(a: torch.Tensor, b: torch.Tensor):
    n = max(a.shape[1], b.shape[1])
    pad = lambda z: torch.nn.functional.pad(z, (0, 0, 0, n - z.shape[1]))  # noqa: E731
    return pad(a), pad(b)


def _accepts_empty(encoder) -> bool:
    import inspect

    try:
        return "allow_empty" in inspect.signature(encoder.__call__).parameters
    except (TypeError, ValueError):
        return False


def _check_numbers(d, strength: float, mode: str) -> None:
    if not isinstance(d.num_steps, int) or d.num_steps <= 0:
        raise ConfigError(f"num_steps={d.num_steps} must be a positive integer")
    if d.guidance < 0:
        raise ConfigError(f"guidance={d.guidance} must be >= 0 (1.0 = no classifier-free guidance)")
    if mode == "v2v" and not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength={strength} must be in (0, 1] (1 = ignore the input video)")
