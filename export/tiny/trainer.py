"""The fast training loop of the tiny models: data rendered on the training device, shape buckets,
bf16 autocast, torch.compile, fused AdamW, EMA, a wall-clock budget and compact resumable state.

Per step: a bucket (frames, height, width, batch) is drawn from a fixed, seeded schedule; its
scenes come from a pool refilled on the device every REFILL steps (`world.sample_scenes`, one
batched call); `modes.make_batch` renders targets and conditioning for random modes; the loss is
flow matching, x_s = (1 - s) x0 + s eps, target v = eps - x0, MSE over all pixels, s from a
shifted logit-normal (a `uniform_frac` share uniform). Nothing in the step reads a value back to
the host: the loss is accumulated on the device and read every `log_every` steps.
Buckets keep the tokens per batch near `tokens`, so every step costs about the same; torch.compile
(dynamic=True) compiles one graph with symbolic sizes that every bucket reuses (a failure falls
back to eager, logged). The LR horizon is fitted once from the speed measured over steps
fit_after..fit_after+fit_steps (after compilation), so the cosine ends when the budget does.
Alphabet: B batch, T frames, H, W pixels, L text tokens.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vdrt.errors import CheckpointError, SamplingError
from vdrt.export.tiny import modes
from vdrt.export.tiny.data.world import Geometry, sample_scenes

log = logging.getLogger(__name__)

# (frames, height, width, share of steps): the default clip most, every trained length and size some.
BUCKETS = ((17, 64, 64, 0.35), (9, 64, 64, 0.10), (33, 64, 64, 0.15), (17, 64, 96, 0.15), (9, 128, 128, 0.15),
           (25, 96, 96, 0.10))
REFILL = 16  # steps of scenes sampled per pool refill


@dataclasses.dataclass(frozen=True)
class Bucket:
    geometry: Geometry
    batch: int
    weight: float


def make_buckets(tokens: int, patch, shapes=BUCKETS) -> list[Bucket]:
    """Batch sizes so that batch x tokens-per-clip is about `tokens` (at least 1 clip)."""
    pt, ph, pw = patch
    out = []
    for f, h, w, share in shapes:
        per_clip = (f // pt) * (h // ph) * (w // pw)
        out.append(Bucket(Geometry(f, h, w), max(1, round(tokens / per_clip)), share))
    return out


def bucket_schedule(n_buckets_weights, seed: int, steps: int) -> np.ndarray:
    """(steps,) bucket index per step, fixed by the seed (the same on resume)."""
    w = np.asarray(n_buckets_weights, dtype=np.float64)
    return np.random.default_rng(seed).choice(len(w), size=steps, p=w / w.sum())


def sample_sigmas(n: int, gen: torch.Generator, device, shift: float, uniform_frac: float) -> torch.Tensor:
    """(N,) noise levels in (0, 1]: shifted logit-normal, with a `uniform_frac` share of uniform draws."""
    from vdrt.samplers.schedules import shift_sigmas

    z = torch.randn(n, generator=gen, device=device)
    u = torch.rand(n, generator=gen, device=device)
    pick = torch.rand(n, generator=gen, device=device) < uniform_frac
    s = torch.where(pick, u, shift_sigmas(torch.sigmoid(z), shift))
    return s.clamp(1e-4, 1.0)


class ScenePool:
    """Scenes of bucket j, sampled REFILL batches at a time on the device. Refill k draws from its own
    generator seeded by (seed, j, k), so a resumed run redraws exactly the scenes it had."""

    def __init__(self, bucket: Bucket, index: int, seed: int, device, two_objects_prob: float = 0.4):
        self.bucket, self.index, self.seed, self.device, self.p2 = bucket, index, seed, device, two_objects_prob
        self.scenes, self.refills, self.next = None, 0, 0

    def _draw(self, k: int):
        gen = torch.Generator(self.device).manual_seed((self.seed * 1_000_003 + self.index * 10_007 + k) % (1 << 62))
        b = self.bucket.batch
        return sample_scenes(b * REFILL, gen, self.bucket.geometry, self.p2, device=self.device)

    def take(self):
        b = self.bucket.batch
        if self.scenes is None or self.next + b > len(self.scenes):
            self.scenes, self.refills, self.next = self._draw(self.refills), self.refills + 1, 0
        sel = slice(self.next, self.next + b)
        self.next += b
        return self.scenes.map(lambda v: v[sel])

    def position(self) -> list[int]:
        return [self.refills, self.next]

    def restore(self, position: list[int]) -> None:
        self.refills, self.next = position
        self.scenes = self._draw(self.refills - 1) if self.refills else None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000  # the most optimizer steps (the LR horizon unless the budget fits fewer)
    lr: float = 6e-4
    warmup: int = 300
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    shift: float = 3.0
    uniform_frac: float = 0.1
    caption_dropout: float = 0.1
    tokens: int = 65536  # tokens a batch (17x64x64 clips have 1088 at patch 8: batch 60)
    seed: int = 0
    bf16: bool = True
    compile: bool = True
    log_every: int = 100
    save_every_s: float = 150.0
    fit_after: int = 150  # steps before timing (compilation of the first buckets)
    fit_steps: int = 100
    stop_at: int | None = None  # stop after this step as if out of time (tests, staged runs)
    state_dtype: str = "bfloat16"  # float32: exact resume (tests, local runs)


class Trainer:
    """Flow-matching training of (denoiser, text encoder) on the procedural world; see the module doc."""

    def __init__(self, den, enc, cfg: TrainConfig, device, budget, patch):
        self.den, self.enc, self.cfg, self.device, self.budget = den, enc, cfg, torch.device(device), budget
        self.params = named_parameters(den, enc)
        fused = self.device.type == "cuda"
        self.opt = torch.optim.AdamW(list(self.params.values()), lr=cfg.lr, betas=(0.9, 0.99),
                                     weight_decay=cfg.weight_decay, fused=fused)
        self.ema = {k: p.detach().clone().float() for k, p in self.params.items()}
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.buckets = make_buckets(cfg.tokens, patch)
        self.schedule = bucket_schedule([b.weight for b in self.buckets], cfg.seed, cfg.steps)
        self.pools = [ScenePool(b, j, cfg.seed, self.device) for j, b in enumerate(self.buckets)]
        self.forward = torch.compile(den, dynamic=True) if cfg.compile else den
        self.step, self.horizon, self.curve, self.wall_before = 0, None, [], 0.0
        self._acc, self._n, self._mark, self._fit_t = None, 0, (0, time.monotonic()), None

    # --- one step -------------------------------------------------------------
    def batch(self) -> modes.Batch:
        pool = self.pools[int(self.schedule[self.step % len(self.schedule)])]
        return modes.make_batch(pool.take(), self.gen)

    def loss(self, b: modes.Batch) -> torch.Tensor:
        c, n = self.cfg, b.x0.shape[0]
        s = sample_sigmas(n, self.gen, self.device, c.shift, c.uniform_frac)
        eps = torch.randn(b.x0.shape, generator=self.gen, device=self.device)
        kept = (b.ids > 0) & (torch.rand(n, generator=self.gen, device=self.device) >= c.caption_dropout)[:, None]
        sv = s.view(n, 1, 1, 1, 1)
        with autocast(self.device, c.bf16):
            ctx = self.enc(b.ids, kept)  # (B, L, D), zeros for dropped captions
            v = self.forward((1 - sv) * b.x0 + sv * eps, 1000 * s, ctx, cond=b.cond)
        return F.mse_loss(v.float(), eps - b.x0)

    def train_step(self) -> None:
        """One optimizer step; a torch.compile failure (forward or backward) falls back to eager once."""
        if self.forward is self.den:
            return self._step()
        try:
            return self._step()
        except Exception as e:  # noqa: BLE001  a compiler failure must not end a paid-for GPU run
            log.warning("torch.compile failed (%s: %s); continuing eagerly", type(e).__name__, str(e)[:300])
            self.forward = self.den
            self.opt.zero_grad(set_to_none=True)
            return self._step()

    def _step(self) -> None:
        c = self.cfg
        lr = lr_at(self.step, c.lr, c.warmup, self.horizon or c.steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss = self.loss(self.batch())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.params.values()), c.grad_clip, foreach=True)
        self.opt.step()
        d = min(c.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.values()), [p.detach().float() for p in self.params.values()], 1 - d)
        self.step += 1
        self._acc = loss.detach().double() if self._acc is None else self._acc + loss.detach().double()
        self._n += 1

    # --- the loop -------------------------------------------------------------
    def run(self, on_save=None) -> bool:
        """Step until the horizon (True) or the budget / stop_at (False); `on_save()` every save_every_s."""
        c, local, last_save = self.cfg, 0, time.monotonic()
        if self.horizon is None and self.budget.total is None:
            self.horizon = c.steps
        while self.step < (self.horizon or c.steps):
            if self.budget.out() or (c.stop_at is not None and self.step >= c.stop_at):
                break
            self.train_step()
            local += 1
            self._maybe_fit(local)
            if self.step % c.log_every == 0:
                self._log()
            if on_save is not None and time.monotonic() - last_save > c.save_every_s:
                on_save()
                last_save = time.monotonic()
        if self._n:
            self._log()
        return self.step >= (self.horizon or c.steps)

    def _maybe_fit(self, local: int) -> None:
        """Fix the LR horizon from the measured speed: min(steps, what fits in the budget left)."""
        c = self.cfg
        if self.horizon is not None or local < c.fit_after or local > c.fit_after + c.fit_steps:
            return
        sync(self.device)
        if local == c.fit_after:
            self._fit_t = time.monotonic()
            return
        if local < c.fit_after + c.fit_steps:
            return
        rate = c.fit_steps / (time.monotonic() - self._fit_t)
        fits = self.step + int(0.95 * self.budget.left() * rate)
        self.horizon = max(self.step + 1, min(c.steps, fits))
        log.info("speed %.2f steps/s after compilation: LR horizon %d steps (asked %d, the budget fits %d)", rate,
                 self.horizon, c.steps, fits)

    def _log(self) -> None:
        loss = float(self._acc) / self._n
        if not math.isfinite(loss):
            raise SamplingError(f"training loss is {loss} at step {self.step}; lower --lr or check the data")
        step0, t0 = self._mark
        now = time.monotonic()
        rate = (self.step - step0) / max(now - t0, 1e-9)
        self.curve.append({"step": self.step, "loss": round(loss, 6), "elapsed": round(self.wall_seconds(), 1),
                           "steps_per_s": round(rate, 2)})
        log.info("step %d/%s loss %.5f lr %.2e %.2f steps/s", self.step, self.horizon or self.cfg.steps, loss,
                 self.opt.param_groups[0]["lr"], rate)
        self._acc, self._n, self._mark = None, 0, (self.step, now)

    def wall_seconds(self) -> float:
        return self.wall_before + self.budget.elapsed()

    # --- state ----------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors (weights, Adam moments, EMA when fp32, RNG) and metadata of a resumable state."""
        dtype = getattr(torch, self.cfg.state_dtype)
        out = {f"param/{k}": p.detach().to(dtype) for k, p in self.params.items()}
        adam_step = 0.0
        for k, p in self.params.items():
            st = self.opt.state.get(p, {})
            for field in ("exp_avg", "exp_avg_sq"):
                if field in st:
                    out[f"{field}/{k}"] = st[field].to(dtype)
            adam_step = float(st["step"]) if "step" in st else adam_step
        if dtype == torch.float32:
            out.update({f"ema/{k}": v for k, v in self.ema.items()})
        out["rng/train"] = self.gen.get_state()
        meta = {"step": self.step, "horizon": self.horizon, "curve": self.curve, "adam_step": adam_step,
                "wall_seconds": self.wall_seconds(), "config": dataclasses.asdict(self.cfg),
                "acc": [None if self._acc is None else float(self._acc), self._n],
                "pools": [p.position() for p in self.pools]}
        return out, meta

    def load(self, tensors: dict[str, torch.Tensor], meta: dict, ema: dict[str, torch.Tensor] | None) -> None:
        """Restore a `state()`; `ema` (e.g. the card's fp16 weights) when the state holds none."""
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(tensors[f"param/{k}"])
                src = tensors.get(f"ema/{k}", None if ema is None else ema.get(k))
                if src is None:
                    raise CheckpointError(f"the saved state has no EMA of {k}, and no card weights were given")
                self.ema[k].copy_(src)
        self._load_adam(tensors, meta["adam_step"])
        self.gen.set_state(tensors["rng/train"])
        self.step, self.horizon, self.curve = meta["step"], meta["horizon"], meta["curve"]
        self.wall_before = meta["wall_seconds"]
        acc, self._n = meta["acc"]
        self._acc = None if acc is None else torch.tensor(acc, dtype=torch.float64, device=self.device)
        self._mark = (self.step, time.monotonic())
        for pool, position in zip(self.pools, meta["pools"]):
            pool.restore(position)

    def _load_adam(self, tensors, adam_step: float) -> None:
        if adam_step == 0:
            return
        for k, p in self.params.items():
            step = torch.tensor(adam_step, dtype=torch.float32, device=p.device if self.opt.defaults.get("fused")
                                else "cpu")
            self.opt.state[p] = {"step": step, "exp_avg": tensors[f"exp_avg/{k}"].to(p.device, p.dtype),
                                 "exp_avg_sq": tensors[f"exp_avg_sq/{k}"].to(p.device, p.dtype)}


# ---------------------------------------------------------------- helpers


def named_parameters(den, encoder) -> dict[str, torch.nn.Parameter]:
    """Every trained tensor under its card name (`denoiser.<n>`, `text.<n>`); refuses persistent buffers."""
    out = {}
    for prefix, module in (("denoiser", den), ("text", encoder)):
        params = dict(module.named_parameters())
        if set(params) != set(module.state_dict()):
            raise CheckpointError(f"{prefix} has persistent buffers; the tiny-model scripts save parameters only")
        out.update({f"{prefix}.{k}": p for k, p in params.items()})
    return out


def lr_at(step: int, base: float, warmup: int, horizon: int, final: float = 0.1) -> float:
    """Linear warmup over `warmup` steps, then cosine from base to final * base at `horizon`."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, horizon - warmup))
    return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p)))


class Budget:
    """Wall-clock budget from construction; `left()` keeps `reserve_s` for the final save."""

    def __init__(self, minutes: float | None, reserve_s: float = 15.0):
        self.t0, self.total = time.monotonic(), None if minutes is None else 60.0 * minutes
        self.reserve = reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return math.inf if self.total is None else self.total - self.reserve - self.elapsed()

    def out(self) -> bool:
        return self.left() <= 0


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op context otherwise."""
    import contextlib

    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def out_path(out_dir, name: str) -> Path:
    return Path(out_dir) / f"{name}.json"
