"""`vdrt bench`: time denoiser steps of a model, or (--quality) run the ground-truth quality oracle.

    vdrt bench factorized-tiny --device cuda                  # median ms per denoiser step
    vdrt bench --quality                                      # the oracle on vdrt-tiny, 64 test clips
    vdrt bench vdrt-tiny-teacher --quality --weights-dir runs/tiny --clips 256 --out q.json

Quality runs on model cards (`<name>.json` + `.safetensors`) found in --weights-dir, else in
the embedded weight folders ($VDRT_WEIGHTS_DIR, then the package), through the batched
`vdrt.quality.oracle.CardGenerator`. Timing takes a card name, a preset, a checkpoint or an
engine directory, and feeds random inputs of the model's default size (or --frames/--height/--width).
"""
from __future__ import annotations

import datetime
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vdrt-tiny"


def command(args) -> int:
    rows = [quality_row(args)] if args.quality else [timing_row(args)]
    print(format_rows(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


def find_card(name: str, weights_dir=None) -> Path | None:
    """The card `<name>.json` in weights_dir, else in the embedded weight folders; None if nowhere."""
    from vdrt import embedded

    if weights_dir is not None:
        path = Path(weights_dir) / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"no model card {path}; pass the folder the training scripts wrote "
                              "(python -m vdrt.export.tiny.train --out DIR)")
        return path
    return embedded.card_path(name)


def run_meta(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "commit": _commit(), "date": datetime.date.today().isoformat(), "torch": torch.__version__}


def _commit() -> str:
    import os
    import subprocess

    if os.environ.get("VDRT_COMMIT"):
        return os.environ["VDRT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _device(arg) -> torch.device:
    return torch.device(arg or ("cuda" if torch.cuda.is_available() else "cpu"))


# ---------------------------------------------------------------- quality


def quality_row(args) -> dict:
    from vdrt.quality import oracle

    name = args.model or DEFAULT_MODEL
    card = find_card(name, args.weights_dir)
    if card is None:
        raise ConfigError(f"no model card {name!r} is installed; train it (python -m vdrt.export.tiny.train) and "
                          "pass --weights-dir DIR, or set VDRT_WEIGHTS_DIR")
    device = _device(args.device)
    gen = oracle.CardGenerator.from_card(card, device=device, random_init=args.random, batch_size=args.batch or 64,
                                         num_steps=args.num_steps, guidance=args.guidance)
    log.info("quality: %s (%s) on %d test clips, %s", gen.name, gen.settings.describe(), args.clips, device)
    result = oracle.evaluate(gen, n_clips=args.clips, seed=args.seed)
    return {"bench": "quality", "case": f"test[0:{args.clips}]", "impl": f"{gen.name} {gen.settings.describe()}",
            **result, **run_meta(device)}


# ---------------------------------------------------------------- timing


def _denoiser(name: str, weights_dir, device, dtype):
    """(callable denoiser, config, default (frames, height, width)) for a card, engine dir, checkpoint or preset."""
    from vdrt import models

    card = None if (weights_dir is None and Path(name).exists()) else find_card(name, weights_dir)
    if card is not None:
        from vdrt.quality.oracle import load_card_models, read_card

        c = read_card(card)
        den = load_card_models(c)[0].to(device=device, dtype=dtype)
        d = c["defaults"]
        return den, den.config, (d["num_frames"], d["height"], d["width"])
    if (Path(name) / "manifest.json").is_file():
        from vdrt.engines import load_engine

        engine = load_engine(name, device=device)
        cfg = models.config_from_dict(engine.manifest["model_config"])
        return engine, cfg, _default_size(cfg, name)
    from vdrt.loader import load_denoiser

    den = load_denoiser(name, dtype=dtype, device=device)
    return den, den.config, _default_size(den.config, name)


def _default_size(cfg, name: str) -> tuple[int, int, int]:
    from vdrt.assemble import defaults_for

    d = defaults_for(cfg, name)
    return d.num_frames, d.height, d.width


def step_inputs(cfg, batch: int, frames: int, height: int, width: int, device, dtype) -> tuple:
    """Random (latents, timestep, context, extra) for one call; pixel models (3 channels) take pixels,
    others Wan-VAE latents (frames (F-1)/4+1, 8x smaller)."""
    if cfg.in_channels == 3:
        f, h, w = frames, height, width
    else:
        f, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    x = rand(batch, cfg.in_channels, f, h, w)
    extra = {}
    if cfg.cond_channels:
        extra["cond"] = rand(batch, cfg.cond_channels, f, h, w)
    if getattr(cfg, "image_dim", None):
        extra["image_embeds"] = rand(batch, 257, cfg.image_dim)
    t = torch.full((batch,), 500.0, device=device)
    return x, t, rand(batch, cfg.text_len, cfg.text_dim), extra


def _time_ms(fn, repeats: int, device: torch.device) -> tuple[float, float]:
    """(first-call ms, median ms of `repeats` later calls)."""
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return 1000 * (time.perf_counter() - t)

    first = once()
    return first, statistics.median(once() for _ in range(max(1, repeats)))


def timing_row(args) -> dict:
    name = args.model or (DEFAULT_MODEL if find_card(DEFAULT_MODEL, args.weights_dir) else "factorized-tiny")
    device = _device(args.device)
    dtype = _dtype(args.dtype, device)
    den, cfg, (f, h, w) = _denoiser(name, args.weights_dir, device, dtype)
    f, h, w = args.frames or f, args.height or h, args.width or w
    x, t, ctx, extra = step_inputs(cfg, args.batch or 1, f, h, w, device, dtype)
    with torch.no_grad():
        first, ms = _time_ms(lambda: den(x, t, ctx, **extra), args.repeats, device)
    return {"bench": "step", "case": f"{args.batch or 1}x{f}x{h}x{w}", "impl": f"{name} {str(dtype).split('.')[-1]}",
            "ms": ms, "first_ms": first, "repeats": args.repeats, **run_meta(device)}


def _dtype(arg, device: torch.device) -> torch.dtype:
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if arg is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if arg not in names:
        raise ConfigError(f"--dtype {arg!r} is not one of {sorted(names)}")
    return names[arg]


# ---------------------------------------------------------------- output


def format_rows(rows: list[dict]) -> str:
    """One block per row: `key  value`, numbers to 4 significant digits."""
    blocks = []
    for r in rows:
        width = max(len(k) for k in r)
        lines = [f"{k:<{width}}  {_fmt(v)}" for k, v in r.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)
