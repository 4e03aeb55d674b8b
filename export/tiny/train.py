"""Train the vdrt-tiny teacher: flow matching on procedural clips, one model for every mode.

    python -m vdrt.export.tiny.train --out runs/tiny --steps 8000 --batch 64 --minutes 6.5 \
        --device cuda --bf16 --pool 40000            # then: --resume continues exactly

Method:
- flow matching: x_s = (1 - s) x0 + s eps, target v = eps - x0, model timestep t = 1000 s;
- timesteps: s = shift(sigmoid(n)), n ~ N(0, 1) (logit-normal, SD3), with the same flow shift
  (default 3) the teacher's sampler uses, for 90% of samples; uniform s for 10%. The logit-normal
  puts the updates where the velocity is hardest to predict; the shift moves them to high noise,
  where the layout and motion of these flat, highly redundant clips are decided (an object is
  still visible at s = 0.9); the uniform share keeps the ends trained, since the samplers start
  at s = 1 and the distilled student is queried at s = 1, .75, .5, .25;
- conditioning: random masks (`common.sample_keep`: 40% t2v, then i2v, extend k = 1..8,
  interpolate, inpaint rectangles, outpaint borders), cond = [x0 * keep, keep];
- the loss covers ALL pixels: the native pipeline never pastes the known pixels back (the model
  takes them through its cond channels), so the model itself must reproduce them; there the
  target v = (x_s - x0) / s follows from its inputs, which costs little capacity;
- captions dropped 10% of the time (mask all False -> the encoder gives zeros, the same
  context as the empty prompt used for CFG);
- AdamW (0.9, 0.99), warmup then cosine to 10% of the peak LR, grad clip 1, bf16 autocast on
  CUDA, EMA (0.999) of all weights, which is what the card ships;
- data: a pool of train-split clips 0..P-1 rendered once (16 processes on the GPU machine) and
  held on the device as uint8 (209 KB a clip); batches are gathered on the device.
Writes DIR/vdrt-tiny-teacher.json + .safetensors, DIR/loss_curve.json and DIR/ckpt/.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from vdrt.export.tiny import common as C

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

NAME = "vdrt-tiny-teacher"
TRAINING_ARGS = ("steps", "batch", "lr", "warmup", "ema", "weight_decay", "shift", "uniform_frac",
                 "caption_dropout", "pool", "seed", "config", "text_config", "bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdrt.export.tiny.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder: card, weights, loss curve, checkpoints")
    p.add_argument("--steps", type=int, default=8000, help="most optimizer steps (the LR horizon)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run; the LR horizon is "
                   "fitted to it from the measured speed, and the run checkpoints and writes the card in time")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    p.add_argument("--init", default=None, help="warm start: a teacher card whose weights initialise model and EMA "
                   "(a fresh optimizer and LR schedule; the card records it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--shift", type=float, default=3.0, help="flow shift of the timestep sampling and of the "
                   "teacher's default sampler")
    p.add_argument("--uniform-frac", type=float, default=0.1, help="share of uniformly drawn timesteps")
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--pool", type=int, default=40000, help="train clips rendered once and held on the device")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: all cores on CUDA, 1 on CPU)")
    p.add_argument("--guidance", type=float, default=4.0, help="CFG scale written as the card's default")
    p.add_argument("--sample-steps", type=int, default=50, help="UniPC steps written as the card's default")
    p.add_argument("--config", default="{}", help="JSON overrides of the FactorizedConfig (tests, ablations)")
    p.add_argument("--text-config", default="{}", help="JSON overrides of the text encoder (dim, layers, heads)")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--compile", action="store_true", help="torch.compile the denoiser (untested on the GPU image)")
    p.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)  # stop as if out of time
    return p.parse_args(argv)


def sample_sigmas(n: int, gen: torch.Generator, device, shift: float, uniform_frac: float) -> torch.Tensor:
    """(N,) noise levels in (0, 1]: shifted logit-normal, with a `uniform_frac` share of uniform draws."""
    from vdrt.samplers.schedules import shift_sigmas

    z = torch.randn(n, generator=gen, device=device)
    u = torch.rand(n, generator=gen, device=device)
    pick = torch.rand(n, generator=gen, device=device) < uniform_frac
    s = torch.where(pick, u, shift_sigmas(torch.sigmoid(z), shift))
    return s.clamp(1e-4, 1.0)


@dataclass
class Data:
    pool: torch.Tensor  # uint8 (N, F, H, W, 3) on the device
    ids: torch.Tensor  # (N, L) int64
    mask: torch.Tensor  # (N, L) bool


def make_loss(den, enc, data: Data, gen: torch.Generator, args, device):
    """The flow-matching loss of one random batch: `loss_fn(step) -> scalar`."""
    from vdrt.export.tiny.quality.oracle import native_cond

    def loss_fn(step: int) -> torch.Tensor:
        b = args.batch
        idx = torch.randint(len(data.pool), (b,), generator=gen, device=device)
        x0 = C.clips_to_model(data.pool[idx])  # (B, 3, F, H, W)
        keep, _ = C.sample_keep(b, gen, device)  # (B, 1, F, H, W)
        s = sample_sigmas(b, gen, device, args.shift, args.uniform_frac)  # (B,)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        kept = data.mask[idx] & (torch.rand(b, generator=gen, device=device) >= args.caption_dropout)[:, None]
        sv = s.view(b, 1, 1, 1, 1)
        with C.autocast(device, args.bf16):
            ctx = enc(data.ids[idx], kept)  # (B, L, D), zeros for dropped captions
            v = den((1 - sv) * x0 + sv * eps, 1000 * s, ctx, cond=native_cond(x0, keep))
        return F.mse_loss(v.float(), eps - x0)

    return loss_fn


def _overrides(text: str, flag: str) -> dict:
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{flag} must be a JSON object, e.g. '{{\"dim\": 32}}' ({e})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{flag} must be a JSON object, got {text!r}")
    return d


def setup(args, device):
    """Models (train mode, on device), data and the training generator."""
    from vdrt.export.tiny.quality.oracle import build_models

    config, text = C.sections(_overrides(args.config, "--config"), _overrides(args.text_config, "--text-config"))
    workers = args.workers if args.workers is not None else (os.cpu_count() if device.type == "cuda" else 1)
    pool, texts = C.render_pool("train", 0, args.pool, device, workers)  # forks before the models touch CUDA
    den, conditioner = build_models(config, text, seed=args.seed)
    den, enc = den.to(device).train(), conditioner.encoder.to(device).train()
    ids, mask = C.tokenize(conditioner.tokenizer, texts, text["max_len"], device)
    gen = torch.Generator(device).manual_seed(args.seed)
    return config, text, den, enc, Data(pool, ids, mask), gen


def load_init(card_path: Path, den, enc) -> None:
    """Copy a card's (hash-checked) weights into the freshly built models, for a warm restart."""
    from vdrt.checkpoint import read_safetensors
    from vdrt.fsutil import sha256_file

    card = json.loads(card_path.read_text())
    weights = card_path.parent / card["weights"]
    if sha256_file(weights) != card["sha256"]:
        raise ConfigError(f"--init {card_path}: {weights.name} does not match the card's sha256")
    state = read_safetensors(weights)
    for prefix, module in (("denoiser.", den), ("text.", enc)):
        part = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
        module.load_state_dict(part, strict=True)
    log.info("warm start from %s (%s steps before)", card_path, card.get("trained", {}).get("steps"))


def card_defaults(args) -> dict:
    return {"num_frames": 17, "height": 64, "width": 64, "num_steps": args.sample_steps, "sampler": "unipc",
            "guidance": args.guidance, "shift": args.shift, "fps": 8}


def trained_info(args, loop, done: bool, device, n_params: int) -> dict:
    return {**C.run_info(device, "vdrt.export.tiny.train", args.argv), "data": f"procedural train split, clips "
            f"0..{args.pool - 1}", "data_seed": args.seed, "steps": loop.step, "horizon": loop.horizon,
            "batch": args.batch, "lr": args.lr, "ema": args.ema, "shift": args.shift,
            "wall_seconds": round(loop.wall_seconds(), 1), "final_loss": loop.curve[-1]["loss"] if loop.curve else None,
            "complete": done, "params": n_params, "loss_curve": "loss_curve.json",
            "init": args.init}


def train(args) -> Path:
    from vdrt import ops

    budget = C.Budget(args.minutes)
    device = C.pick_device(args.device)
    out = Path(args.out)
    C.check_out_dir(out, args.resume, TRAINING_ARGS, args)
    config, text, den, enc, data, gen = setup(args, device)
    if args.init:
        load_init(Path(args.init), den, enc)
    params = C.named_parameters(den, enc)
    cfg = C.LoopConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
                       ema_decay=args.ema, ckpt_every=args.ckpt_every, log_every=args.log_every, stop_at=args.stop_at)
    loop = C.Loop(out, params, cfg, gen, budget, meta={"args": vars(args), "config": config, "text": text})
    if args.resume:
        loop.resume()
    forward = torch.compile(den) if args.compile else den
    log.info("teacher: %.2fM parameters, batch %d, %d train clips on %s", sum(p.numel() for p in params.values())
             / 1e6, args.batch, args.pool, device)
    with ops.use(**dict.fromkeys(ops.OPS, "torch")):  # autograd-capable, deterministic implementations
        done = loop.run(make_loss(forward, enc, data, gen, args, device))
    info = trained_info(args, loop, done, device, sum(p.numel() for p in params.values()))
    return C.write_card(out, NAME, loop.ema_state(), config, text, card_defaults(args), info)


def main(argv=None) -> int:
    return C.run_main(train, parse_args, argv, log)


if __name__ == "__main__":
    raise SystemExit(main())
