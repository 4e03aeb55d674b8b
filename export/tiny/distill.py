"""Distill the vdrt-tiny teacher into the 4-step student `vdrt-tiny`, classifier-free guidance baked in.

    python -m vdrt.export.tiny.distill --teacher runs/tiny/vdrt-tiny-teacher.json --out runs/tiny \
        --trajectories 8192 --steps 4000 --minutes 6.5 --guidance 4.0 --device cuda --bf16

Method: teacher ODE distillation at fixed timesteps ("consistency-style multistep").
1. Trajectories. For N conditioning samples from the TRAIN split (captions, and random
   conditioning masks drawn from the training distribution, `common.sample_keep`), draw noise z
   and integrate the teacher's probability-flow ODE dx/ds = v_cfg(x, s) from s = 1 to 0 with
   Heun's method on a uniform grid of G intervals (G % 4 == 0, no shift, so s = 1, .75, .5, .25
   are grid points; the last interval is an Euler step), where v_cfg = v(uncond) + g (v(cond) -
   v(uncond)) comes from one batched call (the uncond context is zeros, the cond channels are
   shared). Stored on the device in fp16: x at s = 1, .75, .5, .25 and the endpoint x0_T
   (5 x 418 KB a trajectory), clamped to [-1, 1] at the end.
2. Student. Initialised from the teacher's EMA weights (denoiser and text encoder), trained so
   that its clean estimate x0_S = x_s - s v_S(x_s, s, cond) at each of the 4 stored points matches
   x0_T, with the known pixels of the target replaced by the true ones (MSE over all pixels; the
   cond channels are [x0 * keep, keep] as in training). AdamW, warmup + cosine, EMA, as train.py.
3. Sampling (`fewstep`, timesteps [1000, 750, 500, 250]): the student maps x_1 = z to x0, then
   re-noises with fresh noise, x_s' = (1 - s') x0 + s' eps, and so on. The ODE carries the noised
   data marginal p_s' to itself, so the recorded x_s' (what the student was trained on) are
   distributed as (1 - s') x0 + s' eps with x0 ~ the teacher's distribution: the re-noised points
   have the same marginal as the ODE points, and the student's map is valid there.
The trajectory count is cut to what fits `--traj-share` of the budget (measured on the second
batch); the student's LR horizon is fitted to the rest. A resumed run regenerates the same
trajectories (same seed and count) and continues the student exactly.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from vdrt.export.tiny import common as C

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

NAME = "vdrt-tiny"
SIGMAS = (1.0, 0.75, 0.5, 0.25)
TIMESTEPS = [1000, 750, 500, 250]
MASK_CHUNK = 512  # conditioning masks are drawn in chunks of this size (fixes the random stream)
TRAINING_ARGS = ("trajectories", "steps", "batch", "lr", "warmup", "ema", "weight_decay", "guidance", "grid",
                 "traj_batch", "seed", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdrt.export.tiny.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="the teacher's card, e.g. DIR/vdrt-tiny-teacher.json")
    p.add_argument("--out", required=True)
    p.add_argument("--trajectories", type=int, default=8192, help="most teacher trajectories")
    p.add_argument("--steps", type=int, default=4000, help="most student optimizer steps (the LR horizon)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of the whole run")
    p.add_argument("--traj-share", type=float, default=0.45, help="most share of --minutes for the trajectories")
    p.add_argument("--guidance", type=float, default=4.0, help="the teacher's CFG scale, baked into the student")
    p.add_argument("--grid", type=int, default=32, help="Heun intervals from s=1 to 0 (a multiple of 4)")
    p.add_argument("--traj-batch", type=int, default=96, help="trajectories integrated per batch (a CFG call "
                   "holds twice as many clips; 127 is the most that avoids splitting it, see oracle.call_denoiser)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--compile", action="store_true", help="torch.compile the student (untested on the GPU image)")
    p.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.grid < 4 or args.grid % 4:
        raise ConfigError(f"--grid {args.grid} must be a positive multiple of 4 (so s = .75, .5, .25 are grid points)")
    return args


@dataclass
class Conditioning:
    pool: torch.Tensor  # uint8 (N, F, H, W, 3): the clips whose known pixels condition
    ids: torch.Tensor  # (N, L)
    mask: torch.Tensor  # (N, L) bool
    keep: torch.Tensor  # bool (N, 1, F, H, W)


def conditioning(text, clips, gen: torch.Generator, device) -> Conditioning:
    """Rendered clips 0..N-1 of the train split (`render_pool`), their tokenized captions, and one
    random keep mask each (from `gen`)."""
    pool, texts = clips
    n = len(pool)
    ids, mask = C.tokenize(text.tokenizer, texts, text.max_len, device)
    keep = torch.cat([C.sample_keep(min(MASK_CHUNK, n - i), gen, device)[0].bool() for i in range(0, n, MASK_CHUNK)])
    return Conditioning(pool, ids, mask, keep)


def cond_inputs(cd: Conditioning, idx: torch.Tensor):
    """(x0 (B, 3, F, H, W) of the true clips, keep (B, 1, F, H, W) float) for rows idx."""
    return C.clips_to_model(cd.pool[idx]), cd.keep[idx].float()


# ---------------------------------------------------------------- trajectories


class Teacher:
    """CFG velocity of the teacher: one batched call, cond rows first, uncond (zeros context) second."""

    def __init__(self, den, enc, guidance: float, device, bf16: bool):
        self.den, self.enc, self.g, self.device, self.bf16 = den, enc, guidance, device, bf16

    @torch.no_grad()
    def context(self, ids, mask) -> torch.Tensor:
        with C.autocast(self.device, self.bf16):
            ctx = self.enc(ids, mask).float()
        return torch.cat([ctx, torch.zeros_like(ctx)])  # (2B, L, D)

    @torch.no_grad()
    def velocity(self, x, s: float, ctx2, cond2) -> torch.Tensor:
        from vdrt.export.tiny.quality.oracle import call_denoiser
        from vdrt.samplers.guidance import cfg_combine

        t = torch.full((2 * x.shape[0],), 1000.0 * s, device=x.device)
        with C.autocast(self.device, self.bf16):
            out = call_denoiser(self.den, torch.cat([x, x]), t, ctx2, cond2)
        return cfg_combine(out.float(), self.g)


def integrate(teacher: Teacher, z, ctx2, cond2, grid: int) -> list[torch.Tensor]:
    """Heun from s=1 to 0 on a uniform grid: [x(1), x(.75), x(.5), x(.25), x0] (B, 3, F, H, W) each."""
    sig = [1 - i / grid for i in range(grid + 1)]
    marks = {round(grid * (1 - s)): k for k, s in enumerate(SIGMAS)}
    x, states = z, [None] * 5
    for i in range(grid):
        if i in marks:
            states[marks[i]] = x
        s, s1 = sig[i], sig[i + 1]
        d = teacher.velocity(x, s, ctx2, cond2)
        x_e = x + (s1 - s) * d
        x = x_e if s1 == 0 else x + (s1 - s) * 0.5 * (d + teacher.velocity(x_e, s1, ctx2, cond2))
    states[4] = x.clamp(-1, 1)
    return states


def trajectories(teacher: Teacher, cd: Conditioning, args, gen, budget, n_fixed: int | None):
    """States (N, 5, 3, F, H, W) fp16 for conditioning rows 0..N-1; N = n_fixed, or what fits
    args.traj_share of the budget (timed on the second batch). The noise of batch k does not depend on N."""
    from vdrt.export.tiny.quality.oracle import native_cond

    n = n_fixed or len(cd.pool)
    states = torch.empty((n, 5, 3, *C.CLIP), dtype=torch.float16, device=cd.pool.device)
    i, t0, t1 = 0, time.monotonic(), None
    while i < n:
        idx = torch.arange(i, min(i + args.traj_batch, n), device=cd.pool.device)
        x0, keep = cond_inputs(cd, idx)
        cond = native_cond(x0, keep)
        z = torch.randn(x0.shape, generator=gen, device=x0.device)
        out = integrate(teacher, z, teacher.context(cd.ids[idx], cd.mask[idx]), torch.cat([cond, cond]), args.grid)
        states[idx] = torch.stack(out, 1).half()
        i += len(idx)
        if n_fixed is None and i <= 2 * args.traj_batch:  # time the 2nd batch (the 1st warms up the GPU)
            C.sync(cd.pool.device)
            t1, t_prev = time.monotonic(), t1
            n = n if t_prev is None else _fit_count(n, i, len(idx), t1 - t_prev, args, budget)
    seconds = time.monotonic() - t0
    log.info("trajectories: %d in %.1f s (%.1f /s; %d Heun intervals, %d teacher evaluations each, CFG batched)",
             n, seconds, n / seconds, args.grid, 2 * args.grid - 1)
    return states[:n], seconds


def _fit_count(n: int, done: int, per_batch: int, t_batch: float, args, budget) -> int:
    """How many trajectories fit: `done` so far plus whole batches of `t_batch` seconds until the share ends."""
    if budget.total is None:
        return n
    left = args.traj_share * budget.total - budget.elapsed()
    fits = done + per_batch * max(0, int(left / t_batch))
    if fits < n:
        log.info("trajectories: %.1f s a batch of %d; %d fit in --traj-share %.2f of the budget (asked %d)",
                 t_batch, per_batch, fits, args.traj_share, n)
    return min(n, fits)


# ---------------------------------------------------------------- student


def make_loss(den, enc, cd: Conditioning, states, gen, args, device):
    """MSE between the student's x0 = x_s - s v at a stored ODE point and the teacher's endpoint."""
    from vdrt.export.tiny.quality.oracle import native_cond

    sig = torch.tensor(SIGMAS, device=device)

    def loss_fn(step: int) -> torch.Tensor:
        b = args.batch
        idx = torch.randint(len(states), (b,), generator=gen, device=device)
        j = torch.randint(len(SIGMAS), (b,), generator=gen, device=device)
        x = states[idx, j].float()  # (B, 3, F, H, W)
        s = sig[j]  # (B,)
        x0, keep = cond_inputs(cd, idx)
        target = keep * x0 + (1 - keep) * states[idx, 4].float()
        with C.autocast(device, args.bf16):
            v = den(x, 1000 * s, enc(cd.ids[idx], cd.mask[idx]), cond=native_cond(x0, keep))
        return F.mse_loss(x - s.view(b, 1, 1, 1, 1) * v.float(), target)

    return loss_fn


def card_defaults() -> dict:
    return {"num_frames": 17, "height": 64, "width": 64, "num_steps": 4, "sampler": "fewstep",
            "sampler_timesteps": list(TIMESTEPS), "guidance": 1.0, "shift": 1.0, "fps": 8}


def trained_info(args, loop, done, device, teacher_card: dict, n_traj: int, traj_s: float) -> dict:
    return {**C.run_info(device, "vdrt.export.tiny.distill", args.argv), "method": "teacher ODE distillation "
            "(Heun, CFG baked in) at s = 1, .75, .5, .25", "teacher": {"name": teacher_card["name"],
            "sha256": teacher_card["sha256"]}, "guidance": args.guidance, "grid": args.grid,
            "trajectories": n_traj, "trajectory_seconds": round(traj_s, 1), "data": "procedural train split, "
            f"clips 0..{n_traj - 1}", "data_seed": args.seed, "steps": loop.step, "horizon": loop.horizon,
            "batch": args.batch, "lr": args.lr, "ema": args.ema, "wall_seconds": round(loop.wall_seconds(), 1),
            "final_loss": loop.curve[-1]["loss"] if loop.curve else None, "complete": done,
            "loss_curve": "loss_curve.json"}


def _teacher(card, device, guidance, bf16):
    """(Teacher on device, its TinyTextConditioner) from the teacher card."""
    from vdrt.export.tiny.quality.oracle import load_card_models

    den, text = load_card_models(card)
    enc = text.encoder.to(device).eval().requires_grad_(False)
    return Teacher(den.to(device), enc, guidance, device, bf16), text


def _student(card, device):
    """The student: the teacher's (EMA) weights, trainable."""
    from vdrt.export.tiny.quality.oracle import load_card_models

    den, text = load_card_models(card)
    return den.to(device).train().requires_grad_(True), text.encoder.to(device).train().requires_grad_(True)


def _trajectory_phase(args, card, device, budget, stored):
    """(conditioning, trajectory states, seconds): the teacher's ODE solutions, regenerated on resume."""
    workers = args.workers if args.workers is not None else (os.cpu_count() if device.type == "cuda" else 1)
    clips = C.render_pool("train", 0, args.trajectories, device, workers)  # forks before the models touch CUDA
    teacher, text = _teacher(card, device, args.guidance, args.bf16)
    # masks and trajectory noise come from their own generators, so a resumed run redraws the same ones
    cd = conditioning(text, clips, torch.Generator(device).manual_seed(args.seed + 1), device)
    noise = torch.Generator(device).manual_seed(args.seed + 2)
    n_fixed = stored["extra"]["trajectories"] if stored else None
    states, seconds = trajectories(teacher, cd, args, noise, budget, n_fixed)
    return cd, states, (stored["extra"]["trajectory_seconds"] if stored else seconds)


def distill(args) -> Path:
    from vdrt import ops
    from vdrt.export.tiny.quality.oracle import read_card

    budget = C.Budget(args.minutes)
    device = C.pick_device(args.device)
    out = Path(args.out)
    stored = C.check_out_dir(out, args.resume, TRAINING_ARGS, args)
    card = read_card(args.teacher)
    with ops.use(**dict.fromkeys(ops.OPS, "torch")):  # autograd-capable, deterministic implementations
        cd, states, traj_s = _trajectory_phase(args, card, device, budget, stored)
        den, enc = _student(card, device)
        cfg = C.LoopConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
                           ema_decay=args.ema, ckpt_every=args.ckpt_every, log_every=args.log_every,
                           stop_at=args.stop_at)
        gen = torch.Generator(device).manual_seed(args.seed)
        meta = {"args": vars(args), "trajectories": len(states), "trajectory_seconds": traj_s}
        loop = C.Loop(out, C.named_parameters(den, enc), cfg, gen, budget, meta=meta)
        if args.resume:
            loop.resume()
        forward = torch.compile(den) if args.compile else den
        done = loop.run(make_loss(forward, enc, cd, states, gen, args, device))
    info = trained_info(args, loop, done, device, card, len(states), traj_s)
    return C.write_card(out, NAME, loop.ema_state(), card["config"], card["text"], card_defaults(), info)


def main(argv=None) -> int:
    return C.run_main(distill, parse_args, argv, log)


if __name__ == "__main__":
    raise SystemExit(main())
