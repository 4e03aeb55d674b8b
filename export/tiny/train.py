"""Train a tiny teacher (`vdrt-tiny-wan-teacher` or `vdrt-tiny-factorized-teacher`) on the procedural world.

    python -m vdrt.export.tiny.train --arch wan --out $OUT --minutes 8 --device cuda
    python -m vdrt.export.tiny.train --arch wan --out $OUT --minutes 8 --device cuda --resume

How (see `trainer` for the loop, `modes` for the conditioning, `arch` for the models):
- data rendered on the training device every step, at variable length and size (shape buckets
  9..33 frames, 64..128 px, ~`--tokens` tokens a batch), every conditioning mode trained through
  random masks and hints (t2v, i2v, extend, interpolate, slowmo, inpaint, outpaint, grow, remove,
  v2v, upscale, continue), captions dropped 10% of the time (the zero context of CFG);
- flow matching with a shifted logit-normal (shift 3, 10% uniform), loss on all pixels;
- AdamW (0.9, 0.99, fused on CUDA), warmup then cosine to 10% over a horizon fitted to the
  budget, grad clip 1, bf16 autocast and torch.compile on CUDA, EMA 0.999 (what the card ships).
Writes, in --out: `<name>.json` + `<name>.safetensors` (the card: EMA weights in fp16, the loss curve
in `trained.loss_curve`) and `<name>.state-NN.safetensors` (weights and Adam moments in bf16, RNG,
step: see `state`), every --save-every seconds and at the end. 4 files a model, each < 15 MB.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import torch

from vdrt.errors import ConfigError
from vdrt.export.tiny import arch as A
from vdrt.export.tiny import common as C
from vdrt.export.tiny.trainer import Budget, TrainConfig, Trainer

log = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdrt.export.tiny.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="wan", help=f"one of {tuple(A.ARCHS)}")
    p.add_argument("--out", required=True, help="output folder: card, weights, training state")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run (the LR horizon "
                   "is fitted to it); the run saves and writes the card in time")
    p.add_argument("--steps", type=int, default=100_000, help="most optimizer steps (the LR horizon)")
    p.add_argument("--tokens", type=int, default=65536, help="tokens a batch (17x64x64 clips are 1088 tokens)")
    p.add_argument("--resume", action="store_true", help="continue the state saved in --out")
    p.add_argument("--init", default=None, help="warm start from a card's weights (fresh optimizer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 on CUDA (bf16 autocast otherwise)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager (torch.compile otherwise, "
                   "on CUDA)")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--shift", type=float, default=3.0)
    p.add_argument("--guidance", type=float, default=4.0, help="CFG scale written as the card's default")
    p.add_argument("--sample-steps", type=int, default=50, help="UniPC steps written as the card's default")
    p.add_argument("--config", default="{}", help="JSON overrides of the denoiser config (tests, ablations)")
    p.add_argument("--text-config", default="{}", help="JSON overrides of the text encoder (dim, layers, heads)")
    p.add_argument("--state-dtype", default="bfloat16", help="bfloat16 (compact) or float32 (exact resume)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=float, default=150.0, help="seconds between saves")
    p.add_argument("--fit-after", type=int, default=150, help=argparse.SUPPRESS)
    p.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)  # stop as if out of time
    args = p.parse_args(argv)
    A.check_arch(args.arch)
    if args.state_dtype not in ("bfloat16", "float32"):
        raise ConfigError(f"--state-dtype must be bfloat16 or float32, got {args.state_dtype!r}")
    return args


def _overrides(text: str, flag: str) -> dict:
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{flag} must be a JSON object, e.g. '{{\"dim\": 32}}' ({e})") from e
    if not isinstance(d, dict):
        raise ConfigError(f"{flag} must be a JSON object, got {text!r}")
    return d


def train_config(args, device) -> TrainConfig:
    cuda = device.type == "cuda"
    return TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, ema_decay=args.ema, shift=args.shift,
                       tokens=args.tokens, seed=args.seed, bf16=args.bf16 and cuda, compile=args.compile and cuda,
                       log_every=args.log_every, save_every_s=args.save_every, fit_after=args.fit_after,
                       stop_at=args.stop_at, state_dtype=args.state_dtype)


def card_defaults(args) -> dict:
    return {"num_frames": 17, "height": 64, "width": 64, "num_steps": args.sample_steps, "sampler": "unipc",
            "guidance": args.guidance, "shift": args.shift, "fps": 8}


def card_extras() -> dict:
    """Top-level card keys beside the ones vdrt.embedded reads today (see docs/models/vdrt-tiny-wan.md)."""
    return {"cond_layout": "vdrt-native-v2", "trained_range": dict(A.TRAINED_RANGE)}


def build(args, device):
    """(config section, text section, denoiser, text encoder) on the device, in train mode."""
    from vdrt.export.tiny.quality.cards import build_models

    config, text = A.sections(args.arch, _overrides(args.config, "--config"),
                              _overrides(args.text_config, "--text-config"))
    den, conditioner = build_models(config, text, seed=args.seed)
    return config, text, den.to(device).train(), conditioner.encoder.to(device).train()


def trained_info(args, tr: Trainer, done: bool, device, n_params: int) -> dict:
    return {**C.run_info(device, "vdrt.export.tiny.train", args.argv), "arch": args.arch,
            "data": "procedural world, sampled on the device from the training seed", "data_seed": args.seed,
            "steps": tr.step, "horizon": tr.horizon, "tokens_per_batch": args.tokens,
            "buckets": [[*dataclasses.astuple(b.geometry), b.batch, b.weight] for b in tr.buckets],
            "lr": args.lr, "ema": args.ema, "shift": args.shift, "wall_seconds": round(tr.wall_seconds(), 1),
            "final_loss": tr.curve[-1]["loss"] if tr.curve else None, "complete": done, "params": n_params,
            "init": args.init, "loss_curve": tr.curve}


def train(args) -> Path:
    from vdrt import ops
    from vdrt.export.tiny.quality.cards import card_ema
    from vdrt.export.tiny.state import load_state, save_state

    budget = Budget(args.minutes)
    device = C.pick_device(args.device)
    out, name = Path(args.out), A.teacher_name(args.arch)
    C.check_out(out, name, args.resume)
    config, text, den, enc = build(args, device)
    if args.init:
        load_init(Path(args.init), den, enc)
    tr = Trainer(den, enc, train_config(args, device), device, budget, tuple(config["patch_size"]))
    saved = load_state(out, name) if args.resume else None
    if saved is not None:
        tr.load(*saved, ema=card_ema(out, name))
        log.info("resumed %s at step %d", name, tr.step)
    n_params = sum(p.numel() for p in tr.params.values())

    def save(done: bool = False) -> Path:
        card = C.write_card(out, name, tr.ema, config, text, card_defaults(args),
                            trained_info(args, tr, done, device, n_params), extras=card_extras())
        tensors, meta = tr.state()
        save_state(out, name, tensors, {**meta, "args": {k: v for k, v in vars(args).items() if k != "argv"}})
        return card

    log.info("%s: %.2fM parameters, %d buckets %s, on %s", name, n_params / 1e6, len(tr.buckets),
             [(*b.geometry.shape, b.batch) for b in tr.buckets], device)
    with ops.use(**dict.fromkeys(ops.OPS, "torch")):  # autograd-capable, deterministic implementations
        done = tr.run(on_save=save)
    return save(done)


def load_init(card_path: Path, den, enc) -> None:
    """Copy a card's (hash-checked) weights into the freshly built models, for a warm restart."""
    from vdrt.embedded import part
    from vdrt.export.tiny.quality.cards import card_state, read_card

    state = card_state(read_card(card_path))
    den.load_state_dict(part(state, "denoiser"), strict=True)
    enc.load_state_dict(part(state, "text"), strict=True)
    log.info("warm start from %s", card_path)


def main(argv=None) -> int:
    return C.run_main(train, parse_args, argv, log)


if __name__ == "__main__":
    raise SystemExit(main())
