"""`vdrt bench`: time denoiser steps of a model, or (--quality) run the ground-truth quality oracle.

    vdrt bench factorized-tiny --device cuda                  # per-step latency table (vdrt.bench_step)
    vdrt bench wan2.1-t2v-1.3b --backend aoti --steps 4 --peers diffusers,compile --json rows.json
    vdrt bench --quality                                      # the oracle on vdrt-tiny, 64 test clips
    vdrt bench vdrt-tiny-teacher --quality --weights-dir runs/tiny --clips 256 --out q.json

Quality runs on model cards (`<name>.json` + `.safetensors`) found in --weights-dir, else in
the embedded weight folders ($VDRT_WEIGHTS_DIR, then the package), through the batched
`vdrt.quality.oracle.CardGenerator`. Timing takes a card name, a preset, a checkpoint or an
engine directory, and feeds random inputs of the model's default size (or --frames/--height/--width);
see vdrt/bench_step.py for what each timing row holds.
"""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import torch

from vdrt.errors import ConfigError, dist_version

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vdrt-tiny"


def command(args) -> int:
    if args.quality:
        rows = [quality_row(args)]
        print(format_rows(rows))
    else:
        from vdrt.bench_step import timing_rows

        rows = timing_rows(args, run_meta)
        print(format_table(rows))
    if args.out:
        from vdrt.fsutil import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
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
    return {"device": name, "commit": _commit(), "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "triton": dist_version("triton"), "vdrt": dist_version("vdrt")}


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


# ---------------------------------------------------------------- output


TABLE = (("impl", "impl"), ("ms", "ms"), ("p90_ms", "p90 ms"), ("first_ms", "first ms"), ("tflops", "TFLOP/s"),
         ("pct_of_ceiling", "% ceil"), ("peak_mem_gb", "peak GB"), ("rel_err_vs_ours", "rel err"))


def format_table(rows: list[dict]) -> str:
    """Timing rows as a table: one line per impl (the case and device above it)."""
    head = f"{rows[0]['model']}  {rows[0]['case']}  on {rows[0]['device']}"
    cells = [[h for _, h in TABLE]] + [[_fmt(r.get(k)) for k, _ in TABLE] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE))]
    lines = ["  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(len(c)))
             for c in cells]
    return "\n".join([head, *lines])


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
