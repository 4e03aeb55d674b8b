"""Distil a tiny teacher into a 4-step student (`vdrt-tiny-wan` / `vdrt-tiny-factorized`), CFG baked in.

    python -m vdrt.export.tiny.distill --teacher $OUT/vdrt-tiny-wan-teacher.json --out $OUT --minutes 2.5

Method: teacher ODE distillation at fixed timesteps ("consistency-style multistep").
1. Trajectories. Conditioning samples are drawn as in training (`modes.make_batch` over the
   distillation buckets: random modes, masks, hints, captions); from noise z the teacher's
   probability-flow ODE is integrated with THE sampling loop (`vdrt.samplers.loop.sample`) and
   UniPC at `--grid` steps without shift (16: sigmas 1, .9376 ... 0; steps 4, 8, 12 land on
   s = .7502, .5005, .2508) under CFG (`--guidance`, one batched call). Stored on the device in
   fp16: x at those four sigmas (their exact values), the endpoint x0_T clamped to [-1, 1], and
   the conditioning. The count is cut to what fits `--traj-share` of the budget.
2. Student. Initialised from the teacher (EMA weights), trained so that its clean estimate
   x0_S = x_s - s v_S(x_s, s, cond) at each stored point matches x0_T with the known pixels set to
   the true ones, MSE over all pixels; the training loop is `trainer.Trainer` (AdamW, EMA 0.998,
   bf16, torch.compile, compact state), with this batch and loss.
3. Sampling: `fewstep` at [1000, 750, 500, 250]: x0 from the student, re-noised with fresh noise
   to the next sigma, and so on. The ODE carries the noised data marginal p_s to itself, so the
   recorded x_s are distributed as (1 - s) x0 + s eps with x0 from the teacher's distribution: the
   re-noised points have the same marginal, and the student's map is valid there.
Writes `<student>.json` + `.safetensors` and `<student>.state-NN.safetensors` in --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vdrt.errors import ConfigError
from vdrt.export.tiny import common as C
from vdrt.export.tiny import modes
from vdrt.export.tiny.trainer import Budget, ScenePool, TrainConfig, Trainer, autocast, make_buckets, sync

log = logging.getLogger(__name__)

TIMESTEPS = [1000, 750, 500, 250]
# (frames, height, width, share): the default clip most; the student inherits the teacher's other sizes.
DISTILL_BUCKETS = ((17, 64, 64, 0.6), (33, 64, 64, 0.2), (9, 128, 128, 0.2))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdrt.export.tiny.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="the teacher's card, e.g. DIR/vdrt-tiny-wan-teacher.json")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of the whole run")
    p.add_argument("--trajectories", type=int, default=8192, help="most teacher trajectories")
    p.add_argument("--traj-share", type=float, default=0.4, help="most share of --minutes for the trajectories")
    p.add_argument("--traj-batch", type=int, default=128, help="trajectories integrated per loop call")
    p.add_argument("--steps", type=int, default=100_000, help="most student steps (the LR horizon)")
    p.add_argument("--tokens", type=int, default=65536)
    p.add_argument("--guidance", type=float, default=4.0, help="the teacher's CFG scale, baked into the student")
    p.add_argument("--grid", type=int, default=16, help="UniPC steps of a trajectory (a multiple of 4)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--state-dtype", default="bfloat16")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=float, default=150.0)
    p.add_argument("--fit-after", type=int, default=100, help=argparse.SUPPRESS)
    p.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.grid < 4 or args.grid % 4:
        raise ConfigError(f"--grid {args.grid} must be a positive multiple of 4 (so s = .75, .5, .25 are grid points)")
    if args.trajectories < 1 or not 0 < args.traj_share < 1:
        raise ConfigError("--trajectories must be >= 1 and --traj-share in (0, 1)")
    return args


# ---------------------------------------------------------------- trajectories


@dataclasses.dataclass
class Trajectories:
    """One bucket's teacher solutions: states (N, 5, 3, T, H, W) fp16, sigmas (4,), cond (N, 8, ...) fp16, ids."""

    states: torch.Tensor
    sigmas: torch.Tensor
    cond: torch.Tensor
    ids: torch.Tensor


def solve(teacher, enc, b: modes.Batch, noise: torch.Tensor, grid: int, guidance: float, bf16: bool):
    """[x(1), x(.75), x(.5), x(.25), x0] (B, 3, T, H, W) each and the 4 sigmas, through the sampling loop."""
    from vdrt import samplers
    from vdrt.samplers.guidance import cfg_combine
    from vdrt.samplers.loop import sample

    sampler = samplers.get("unipc", shift=1.0)
    marks = {grid // 4 * k - 1: k for k in (1, 2, 3)}  # after step i, x is at sigma(i + 1)
    states = [noise, None, None, None]
    with autocast(noise.device, bf16):
        ctx = enc(b.ids, b.ids > 0).float()
    ctx2, cond2 = torch.cat([ctx, torch.zeros_like(ctx)]), torch.cat([b.cond, b.cond])

    def model_fn(x, t, i):
        with autocast(x.device, bf16):
            out = teacher(torch.cat([x, x]), torch.cat([t, t]), ctx2, cond=cond2)
        return cfg_combine(out.float(), guidance)

    def record(i, x):
        if i in marks:
            states[marks[i]] = x

    x0 = sample(model_fn, noise, sampler, grid, callback=record, progress=False)
    sig = torch.tensor([sampler.sigma(0), *(sampler.sigma(i + 1) for i in sorted(marks))])
    return [*states, x0.clamp(-1, 1)], sig


@torch.no_grad()
def trajectories(teacher, enc, args, device, budget) -> list[Trajectories]:
    """Teacher solutions for each distillation bucket, in proportion to its share, within the budget."""
    buckets = make_buckets(args.traj_batch * 1088, teacher.config.patch_size, DISTILL_BUCKETS)
    pools = [ScenePool(b, j, args.seed + 1, device) for j, b in enumerate(buckets)]
    gen = torch.Generator(device).manual_seed(args.seed + 2)
    parts = [[] for _ in buckets]
    t0, done, n_max = time.monotonic(), 0, args.trajectories
    while done < n_max:
        j = min(range(len(buckets)), key=lambda k: sum(len(p.ids) for p in parts[k]) / buckets[k].weight)
        b = modes.make_batch(pools[j].take(), gen)
        noise = torch.randn(b.x0.shape, generator=gen, device=device)
        states, sig = solve(teacher, enc, b, noise, args.grid, args.guidance, args.bf16)
        parts[j].append(Trajectories(torch.stack(states, 1).half(), sig, b.cond.half(), b.ids))
        done += len(b.ids)
        n_max = _fit_count(n_max, done, t0, args, budget)
    log.info("trajectories: %d in %.1f s (UniPC-%d, CFG %.1f, %s)", done, time.monotonic() - t0, args.grid,
             args.guidance, [sum(len(p.ids) for p in part) for part in parts])
    return [_cat(part) for part in parts if part]


def _fit_count(n_max: int, done: int, t0: float, args, budget) -> int:
    if budget.total is None:
        return n_max
    sync(args.device_obj)
    rate = done / max(time.monotonic() - t0, 1e-6)
    left = args.traj_share * budget.total - budget.elapsed()
    return min(n_max, done + int(max(0.0, left) * rate))


def _cat(parts: list[Trajectories]) -> Trajectories:
    return Trajectories(torch.cat([p.states for p in parts]), parts[0].sigmas, torch.cat([p.cond for p in parts]),
                        torch.cat([p.ids for p in parts]))


# ---------------------------------------------------------------- student


class Distiller(Trainer):
    """Trainer whose batch is stored teacher points and whose loss is the x0 match (see the module doc)."""

    def __init__(self, den, enc, cfg: TrainConfig, device, budget, data: list[Trajectories]):
        super().__init__(den, enc, cfg, device, budget, den.config.patch_size)
        self.data = data
        shares = torch.tensor([float(len(d.ids)) for d in data])
        self.pick = torch.multinomial(shares / shares.sum(), cfg.steps, replacement=True,
                                      generator=torch.Generator().manual_seed(cfg.seed))

    def batch(self):
        d = self.data[int(self.pick[self.step % len(self.pick)])]
        n = max(1, min(len(d.ids), self.cfg.tokens // _tokens_per_clip(d, self.den.config.patch_size)))
        idx = torch.randint(len(d.ids), (n,), generator=self.gen, device=self.device)
        j = torch.randint(4, (n,), generator=self.gen, device=self.device)
        return d, idx, j

    def loss(self, batch) -> torch.Tensor:
        d, idx, j = batch
        x, s = d.states[idx, j].float(), d.sigmas.to(self.device)[j]  # (B, 3, T, H, W), (B,)
        cond = d.cond[idx].float()
        keep = cond[:, 3:4]
        target = cond[:, :3] + (1 - keep) * d.states[idx, 4].float()  # known pixels from the truth
        with autocast(self.device, self.cfg.bf16):
            v = self.forward(x, 1000 * s, self.enc(d.ids[idx], d.ids[idx] > 0), cond=cond)
        return F.mse_loss(x - s.view(-1, 1, 1, 1, 1) * v.float(), target)


def _tokens_per_clip(d: Trajectories, patch) -> int:
    t, h, w = d.states.shape[-3:]
    return (t // patch[0]) * (h // patch[1]) * (w // patch[2])


def card_defaults() -> dict:
    return {"num_frames": 17, "height": 64, "width": 64, "num_steps": 4, "sampler": "fewstep",
            "sampler_timesteps": list(TIMESTEPS), "guidance": 1.0, "shift": 1.0, "fps": 8}


def trained_info(args, card: dict, tr: Trainer, done: bool, device, n_traj: int, traj_s: float) -> dict:
    return {**C.run_info(device, "vdrt.export.tiny.distill", args.argv), "method": "teacher ODE distillation "
            "(UniPC through vdrt.samplers.loop, CFG baked in) at s = 1, .75, .5, .25",
            "teacher": {"name": card["name"], "sha256": card["sha256"]}, "guidance": args.guidance,
            "grid": args.grid, "trajectories": n_traj, "trajectory_seconds": round(traj_s, 1), "steps": tr.step,
            "horizon": tr.horizon, "lr": args.lr, "ema": args.ema, "wall_seconds": round(tr.wall_seconds(), 1),
            "complete": done, "final_loss": tr.curve[-1]["loss"] if tr.curve else None, "loss_curve": tr.curve}


def _student_name(teacher_card: dict) -> str:
    name = teacher_card["name"]
    return name[: -len("-teacher")] if name.endswith("-teacher") else name + "-student"


def distill(args) -> Path:
    from vdrt import ops
    from vdrt.export.tiny.quality.cards import card_ema, load_card_models, read_card
    from vdrt.export.tiny.state import load_state, save_state
    from vdrt.export.tiny.train import card_extras

    budget = Budget(args.minutes)
    device = args.device_obj = C.pick_device(args.device)
    card = read_card(args.teacher)
    out, name = Path(args.out), _student_name(card)
    C.check_out(out, name, args.resume)
    cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, ema_decay=args.ema, tokens=args.tokens,
                      seed=args.seed, bf16=args.bf16 and device.type == "cuda",
                      compile=args.compile and device.type == "cuda", log_every=args.log_every,
                      save_every_s=args.save_every, fit_after=args.fit_after, stop_at=args.stop_at,
                      state_dtype=args.state_dtype)
    with ops.use(**dict.fromkeys(ops.OPS, "torch")):
        teacher, text = load_card_models(card)
        teacher, enc = teacher.to(device), text.encoder.to(device)
        t0 = time.monotonic()
        data = trajectories(teacher, enc, args, device, budget)
        traj_s, n_traj = time.monotonic() - t0, sum(len(d.ids) for d in data)
        den, text = load_card_models(card)
        den, enc = den.to(device).train().requires_grad_(True), text.encoder.to(device).train().requires_grad_(True)
        tr = Distiller(den, enc, cfg, device, budget, data)
        saved = load_state(out, name) if args.resume else None
        if saved is not None:
            tr.load(*saved, ema=None if args.state_dtype == "float32" else card_ema(out, name))

        def save(done: bool = False) -> Path:
            info = trained_info(args, card, tr, done, device, n_traj, traj_s)
            path = C.write_card(out, name, tr.ema, card["config"], card["text"], card_defaults(), info,
                                extras=card_extras())
            save_state(out, name, *tr.state())
            return path

        done = tr.run(on_save=save)
    return save(done)


def main(argv=None) -> int:
    return C.run_main(distill, parse_args, argv, log)


if __name__ == "__main__":
    raise SystemExit(main())
