"""The quality oracle: ground-truth metrics of a video generator on held-out procedural clips.

    gen = CardGenerator.from_card("vdrt/weights/vdrt-tiny.json", device="cuda")
    result = evaluate(gen, n_clips=256, seed=0)   # {forecast_psnr, t2v_accuracy, area_cv, ...}

`evaluate(generate_fn, n_clips, seed)` takes any `generate_fn(prompts, mode, video=None,
known_frames=None) -> uint8 (B, 17, 64, 64, 3)` (given `seed=` too when it accepts it) and scores
it on clips 0..n_clips-1 of the TEST split (never trained on):

- forecasting: mode "extend" with the first KNOWN_FRAMES (4) frames of each clip known: PSNR and
  SSIM of frames 5..17 against the truth, and the mean centroid error in pixels of the true
  objects (`vdrt.export.tiny.quality.metrics.forecast_metrics`);
- caption adherence: mode "t2v" from the test captions, scored by the analytic detector
  (`vdrt.export.tiny.quality.detector.evaluate`): the fraction of captioned objects with every attribute
  right, of clips with every object right, and per attribute (colour, shape, size, motion);
- temporal consistency of the t2v clips: area CV and colour std of each detected object
  (`metrics.temporal_consistency`), averaged over clips with an object, and the fraction of
  clips where the detector finds any object.

The generators here:
- `CardGenerator`: a model card (`<name>.json` + `.safetensors`, written by
  `vdrt.export.tiny`) or a random-init model, sampled in batches with `vdrt.samplers` and the
  native conditioning layout `cond = [known * keep (3), keep (1)]` that `vdrt.native` feeds.
  It does what `vdrt.Pipeline` does for one clip (CFG batched into one call, no pasting of
  known pixels), for many clips per denoiser call.
- `pipeline_generator(pipe)`: any `vdrt.Pipeline`, one clip per call.
- `reference_generator` (returns the truth: the metric ceilings) and `repeat_last_generator`
  (forecast = the last known frame repeated; t2v = a blank grey clip): baselines.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from vdrt.errors import CheckpointError, ConfigError, MediaError

log = logging.getLogger(__name__)

KNOWN_FRAMES = 4
CLIP_SHAPE = (17, 64, 64, 3)
GEN_MODES = ("t2v", "i2v", "extend", "interpolate")


# ---------------------------------------------------------------- evaluation


def evaluate(generate_fn, n_clips: int = 64, seed: int = 0, known: int = KNOWN_FRAMES) -> dict:
    """Score `generate_fn` on test clips 0..n_clips-1; see the module doc for the metrics."""
    from vdrt.export.tiny.data.procedural import batch

    if n_clips < 1:
        raise ConfigError(f"n_clips must be >= 1, got {n_clips}")
    clips, captions = batch("test", 0, n_clips)
    kw = {"seed": seed} if _accepts(generate_fn, "seed") else {}
    t0 = time.perf_counter()
    forecast = _checked(generate_fn(captions, "extend", video=clips, known_frames=known, **kw), n_clips)
    t1 = time.perf_counter()
    t2v = _checked(generate_fn(captions, "t2v", **kw), n_clips)
    t2 = time.perf_counter()
    out = {"clips": n_clips, **forecast_scores(forecast, clips, known), **adherence_scores(t2v, captions),
           **consistency_scores(t2v)}
    out.update(ms_per_clip=1000 * (t2 - t0) / (2 * n_clips), ms_per_clip_extend=1000 * (t1 - t0) / n_clips,
               ms_per_clip_t2v=1000 * (t2 - t1) / n_clips)
    return out


def forecast_scores(pred: np.ndarray, truth: np.ndarray, known: int = KNOWN_FRAMES) -> dict:
    """Means over clips of `forecast_metrics` (centroid error over clips where it is defined)."""
    from vdrt.export.tiny.quality.metrics import forecast_metrics

    rows = [forecast_metrics(p, t, known) for p, t in zip(pred, truth)]
    errs = [r["centroid_error"] for r in rows if r["centroid_error"] is not None]
    return {"forecast_psnr": _mean([r["psnr"] for r in rows]), "forecast_ssim": _mean([r["ssim"] for r in rows]),
            "forecast_centroid_px": _mean(errs)}


def adherence_scores(clips: np.ndarray, captions: list[str]) -> dict:
    """Detector scores of t2v clips against their captions, keys prefixed `t2v_`."""
    from vdrt.export.tiny.quality.detector import ATTRIBUTES
    from vdrt.export.tiny.quality.detector import evaluate as detector_evaluate

    r = detector_evaluate(list(clips), captions)
    return {f"t2v_{k}": r[k] for k in ("accuracy", "clip_accuracy", *ATTRIBUTES)}


def consistency_scores(clips: np.ndarray) -> dict:
    """Temporal consistency averaged over the clips with a detected object."""
    from vdrt.export.tiny.quality.metrics import temporal_consistency

    rows = [temporal_consistency(c) for c in clips]
    found = [r for r in rows if r["area_cv"] is not None]
    return {"area_cv": _mean([r["area_cv"] for r in found]), "colour_std": _mean([r["colour_std"] for r in found]),
            "detected": len(found) / max(len(rows), 1)}


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _checked(frames, n: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.shape != (n, *CLIP_SHAPE):
        raise MediaError(f"generate_fn returned {frames.dtype} {frames.shape}; the oracle needs uint8 "
                         f"{(n, *CLIP_SHAPE)}")
    return frames


# ---------------------------------------------------------------- cards


def read_card(path) -> dict:
    """A model card (JSON), with `_dir` set to its folder."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"model card {path} is unreadable ({e}); re-run vdrt.export.tiny to write it") from e
    missing = [k for k in ("name", "weights", "sha256", "config", "text", "defaults") if k not in card]
    if missing:
        raise CheckpointError(f"model card {path} lacks {missing}; it was not written by vdrt.export.tiny")
    return {**card, "_dir": str(path.parent)}


def card_state(card: dict) -> dict:
    """The card's weights as fp32 tensors, after checking the sha256."""
    from vdrt.checkpoint import read_safetensors
    from vdrt.fsutil import sha256_file

    path = Path(card["_dir"]) / card["weights"]
    if not path.is_file():
        raise CheckpointError(f"weights {path} named by card {card['name']!r} are missing")
    if sha256_file(path) != card["sha256"]:
        raise CheckpointError(f"weights {path} do not match the sha256 in card {card['name']!r}; re-copy both files")
    return {k: v.float() for k, v in read_safetensors(path).items()}


def build_models(config: dict, text: dict, seed: int = 0):
    """Random-init (denoiser, TinyTextConditioner) for a card's `config` and `text` sections."""
    from vdrt import models
    from vdrt.text.tiny_encoder import TinyTextConditioner, TinyTextConfig, TinyTextEncoder
    from vdrt.text.word_tokenizer import WordTokenizer

    tok = WordTokenizer(text["vocab"], max_len=text["max_len"])
    tcfg = TinyTextConfig(tok.vocab_size, text["max_len"], text["dim"], text["layers"], text["heads"])
    cfg = models.config_from_dict(config)
    if cfg.text_dim != tcfg.dim:
        raise ConfigError(f"model text_dim {cfg.text_dim} != text encoder dim {tcfg.dim}")
    torch.manual_seed(seed)
    return models.build_model(cfg), TinyTextConditioner(tok, TinyTextEncoder(tcfg))


def load_card_models(card: dict, state: dict | None = None):
    """(denoiser, TinyTextConditioner) of a card with its weights (fp32, CPU, eval)."""
    from vdrt.checkpoint import check_state_dict
    from vdrt.embedded import part

    den, text = build_models(card["config"], card["text"])
    state = card_state(card) if state is None else state
    for module, prefix in ((den, "denoiser"), (text.encoder, "text")):
        check_state_dict(module, part(state, prefix), f"card {card['name']!r} ({prefix})")
        module.load_state_dict(part(state, prefix), strict=True)
    return den.eval().requires_grad_(False), text


# ---------------------------------------------------------------- batched generation from a card


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    num_steps: int = 4
    guidance: float = 1.0
    sampler: str = "fewstep"
    shift: float = 1.0
    timesteps: tuple = ()  # fewstep only

    @classmethod
    def from_defaults(cls, d: dict, **overrides) -> SampleSettings:
        base = cls(d.get("num_steps", 4), d.get("guidance", 1.0), d.get("sampler", "fewstep"), d.get("shift", 1.0),
                   tuple(d.get("sampler_timesteps") or ()))
        over = {k: v for k, v in overrides.items() if v is not None}
        if "num_steps" in over and "timesteps" not in over and len(base.timesteps) != over["num_steps"]:
            over["timesteps"] = ()  # the distilled timesteps only fit their own step count
        return dataclasses.replace(base, **over)

    def sampler_obj(self, seed: int):
        from vdrt import samplers

        if self.sampler == "fewstep":
            return samplers.get("fewstep", generator=seed, timesteps=self.timesteps or None)
        return samplers.get(self.sampler, generator=seed, shift=self.shift)

    def describe(self) -> str:
        g = f" g{self.guidance:g}" if self.guidance != 1.0 else ""
        return f"{self.sampler}-{self.num_steps}{g}" + (f" shift{self.shift:g}" if self.sampler != "fewstep" else "")


def native_cond(known: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """vdrt's native conditioning: (B, C, F, H, W), (B, 1, F, H, W) -> (B, C+1, F, H, W) = [known*keep, keep]."""
    return torch.cat([known * keep, keep], dim=1)


CUDA_GRID_Y = 65535  # SDPA's flash / mem-efficient kernels put the batch on a grid axis of this size


def call_denoiser(den, x, t, ctx, cond, limit: int | None = None) -> torch.Tensor:
    """den(x, t, ctx, cond=cond) in even batch chunks small enough for temporal attention on CUDA.

    Temporal attention runs SDPA over B*S sequences (S patches a frame); its CUDA kernels fail
    with "invalid configuration argument" from B*S = 65536 on (pytorch#146704), e.g. 256 clips
    of 64x64 at patch 4 (a CFG call of 128 clips).
    """
    if limit is None and x.device.type == "cuda":
        p = den.config.patch_size[-1]
        limit = max(1, CUDA_GRID_Y // ((x.shape[-2] // p) * (x.shape[-1] // p)))
    if limit is None or x.shape[0] <= limit:
        return den(x, t, ctx, cond=cond)
    n = -(-x.shape[0] // limit)
    size = -(-x.shape[0] // n)
    return torch.cat([den(x[i: i + size], t[i: i + size], ctx[i: i + size], cond=cond[i: i + size])
                      for i in range(0, x.shape[0], size)])


def mode_keep(mode: str, b: int, f: int, h: int, w: int, known_frames: int | None = None) -> torch.Tensor:
    """The keep mask (B, 1, F, H, W) of a frame-conditioned mode (1 = known)."""
    keep = torch.zeros(b, 1, f, h, w)
    if mode == "i2v":
        keep[:, :, 0] = 1
    elif mode == "extend":
        k = known_frames or KNOWN_FRAMES
        if not 1 <= k < f:
            raise ConfigError(f"extend: known_frames={k} must be in 1..{f - 1}")
        keep[:, :, :k] = 1
    elif mode == "interpolate":
        keep[:, :, 0], keep[:, :, -1] = 1, 1
    elif mode != "t2v":
        raise ConfigError(f"mode {mode!r} is not supported here; use one of {GEN_MODES}")
    return keep


class CardGenerator:
    """Batched generation with a tiny-model card: `(prompts, mode, video=None, known_frames=None, seed=0)`.

    On CUDA the denoiser runs under bf16 autocast (as trained) and the torch op implementations
    are forced (so a kernel under development cannot skew quality numbers); fp32 on the CPU.
    """

    def __init__(self, denoiser, text, settings: SampleSettings, device=None, batch_size: int = 64,
                 name: str = "", autocast: bool | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.denoiser, self.text = denoiser.to(self.device).eval(), text
        text.encoder.to(self.device).eval()
        self.settings, self.batch_size, self.name = settings, int(batch_size), name
        self.autocast = self.device.type == "cuda" if autocast is None else autocast

    @classmethod
    def from_card(cls, card_path, device=None, random_init: bool = False, batch_size: int = 64,
                  **settings) -> CardGenerator:
        """Load a card (or only its architecture, `random_init=True`); `settings` override its defaults
        (num_steps, guidance, sampler, shift, timesteps)."""
        card = read_card(card_path)
        den, text = build_models(card["config"], card["text"]) if random_init else load_card_models(card)
        name = card["name"] + (" (random init)" if random_init else "")
        return cls(den, text, SampleSettings.from_defaults(card["defaults"], **settings), device=device,
                   batch_size=batch_size, name=name)

    def __call__(self, prompts, mode: str, video=None, known_frames=None, seed: int = 0) -> np.ndarray:
        from vdrt.export.tiny.data.procedural import to_uint8

        outs = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            vid = None if video is None else np.asarray(video)[chunk]
            x = self.sample(list(prompts[chunk]), mode, vid, known_frames, seed + start)
            outs.append(to_uint8(x.float().clamp(-1, 1).cpu()))
        return np.concatenate(outs)

    def _cond(self, mode: str, video, known_frames, b: int) -> torch.Tensor:
        from vdrt.export.tiny.data.procedural import to_float

        f, h, w, _ = CLIP_SHAPE
        keep = mode_keep(mode, b, f, h, w, known_frames)
        if mode == "t2v":
            return native_cond(torch.zeros(b, 3, f, h, w), keep)
        if video is None:
            raise ConfigError(f"mode {mode} needs video= (uint8 (B, T, H, W, 3))")
        return native_cond(torch.from_numpy(to_float(video)), keep)

    @torch.no_grad()
    def sample(self, prompts: list[str], mode: str, video=None, known_frames=None, seed: int = 0) -> torch.Tensor:
        """Latents (B, 3, F, H, W) in about [-1, 1] for one batch of prompts."""
        from vdrt import ops

        s, dev, b = self.settings, self.device, len(prompts)
        cond = self._cond(mode, video, known_frames, b).to(dev)
        ctx = self.text(prompts)
        cfg = s.guidance != 1.0
        if cfg:
            ctx, cond = torch.cat([ctx, torch.zeros_like(ctx)]), torch.cat([cond, cond])
        sampler = s.sampler_obj(seed)
        ts = sampler.timesteps(s.num_steps)
        x = torch.randn(b, 3, *CLIP_SHAPE[:3], generator=torch.Generator().manual_seed(seed)).to(dev)
        with ops.use(**dict.fromkeys(ops.OPS, "torch")), self._autocast():
            for i in range(len(ts)):
                v = self._velocity(x, float(ts[i]), ctx, cond, cfg)
                x = sampler.step(x, v, i)
        if not torch.isfinite(x).all():
            raise ConfigError(f"{self.name}: NaN/Inf in the samples ({s.describe()}); the weights are broken")
        return x

    def _velocity(self, x, t: float, ctx, cond, cfg: bool) -> torch.Tensor:
        from vdrt.samplers.guidance import cfg_combine

        xin = torch.cat([x, x]) if cfg else x
        tt = torch.full((xin.shape[0],), t, device=x.device)
        out = call_denoiser(self.denoiser, xin, tt, ctx, cond).float()
        return cfg_combine(out, self.settings.guidance) if cfg else out

    def _autocast(self):
        import contextlib

        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------- other generators


def pipeline_generator(pipe, **call_kwargs):
    """A generate_fn over a `vdrt.Pipeline`, one clip per call (seed + clip index per clip)."""

    def generate(prompts, mode, video=None, known_frames=None, seed: int = 0):
        out = []
        for i, p in enumerate(prompts):
            media = {} if video is None else {"video": np.asarray(video)[i], "known_frames": known_frames}
            out.append(pipe(p, mode=mode, seed=seed + i, progress=False, **media, **call_kwargs).frames)
        return np.stack(out)

    return generate


def reference_generator(n_clips: int):
    """The truth: forecasts are the given videos, t2v clips are the test clips of the same index."""
    from vdrt.export.tiny.data.procedural import batch

    truth, _ = batch("test", 0, n_clips)

    def generate(prompts, mode, video=None, known_frames=None):
        return np.array(video) if video is not None else truth[: len(prompts)].copy()

    return generate


def repeat_last_generator(prompts, mode, video=None, known_frames=None):
    """Baseline: forecasts repeat the last known frame; t2v gives a blank grey clip."""
    if video is None:
        return np.full((len(prompts), *CLIP_SHAPE), 128, np.uint8)
    k = known_frames or KNOWN_FRAMES
    out = np.array(video)
    out[:, k:] = out[:, k - 1 : k]
    return out
