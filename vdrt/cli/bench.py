"""`vdrt bench`: time the denoiser step of a model (and, with --quality, run the quality oracle).

    vdrt bench factorized-tiny --device cuda                  # per-step latency table (vdrt.bench.step)
    vdrt bench wan2.1-t2v-1.3b --backend aoti --steps 4 --peers diffusers,compile --json rows.json
    vdrt bench --quality                                      # the oracle on vdrt-tiny, 64 test clips
    vdrt bench vdrt-tiny-teacher --quality --weights-dir runs/tiny --clips 256 --out q.json

`--steps` is the number of sampling steps, as everywhere: of the end-to-end clip row (timing)
or of each generated clip (--quality; default: the card's). Quality runs on model cards found in
--weights-dir, else in the embedded weight folders ($VDRT_WEIGHTS_DIR, then the package). Timing
takes a card name, a preset, a checkpoint or an engine directory, and feeds random inputs of the
model's default size (or --frames/--height/--width); see vdrt/bench/step.py for what a row holds.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TABLE = (("impl", "impl"), ("ms", "ms"), ("p90_ms", "p90 ms"), ("first_ms", "first ms"), ("tflops", "TFLOP/s"),
         ("pct_of_ceiling", "% ceil"), ("peak_mem_gb", "peak GB"), ("rel_err_vs_ours", "rel err"))


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmark a model or engine", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None, help="model card name (default vdrt-tiny), preset, checkpoint or "
                   "engine directory")
    p.add_argument("--quality", action="store_true", help="run the ground-truth quality metrics (vdrt-tiny)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", "--json", dest="out", default=None, help="write JSON rows here")
    p.add_argument("--weights-dir", default=None, help="folder holding the model card <model>.json + weights "
                   "(default: the embedded weight folders)")
    p.add_argument("--steps", "--num-steps", dest="steps", type=int, default=None,
                   help="sampling steps: of one end-to-end clip timed beside the step (timing), or of each clip "
                        "(--quality; default: the card's)")
    q = p.add_argument_group("quality (--quality)")
    q.add_argument("--clips", type=int, default=64, help="held-out test clips to score")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the card's)")
    q.add_argument("--random", action="store_true", help="score the card's architecture with random weights")
    t = p.add_argument_group("timing (without --quality)")
    t.add_argument("--batch", type=int, default=None, help="batch size (timing: 1; quality: clips per call, 64)")
    t.add_argument("--repeats", type=int, default=10, help="timed calls (the median is reported)")
    t.add_argument("--frames", type=int, default=None, help="pixel frames (default: the model's)")
    t.add_argument("--height", type=int, default=None, help="pixels")
    t.add_argument("--width", type=int, default=None, help="pixels")
    t.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on CPU)")
    t.add_argument("--dtype", default=None, help=argparse.SUPPRESS)  # older spelling: float32 | bfloat16 | float16
    t.add_argument("--backend", default=None,
                   help="torch | aoti | onnx: build the model into that engine first (default: torch, or the "
                        "engine directory's own backend)")
    t.add_argument("--peers", default=None, help="comma list of peers timed in the same process: diffusers,compile")
    p.set_defaults(func=run_bench)


def run_bench(args) -> int:
    from vdrt import tables

    if args.quality:
        rows = [quality_row(args)]
        print(tables.pairs(rows))
    else:
        from vdrt.bench.step import timing_rows

        rows = timing_rows(args, build_engine)
        r = rows[0]
        print(tables.table(rows, TABLE, title=f"{r['model']}  {r['case']}  on {r['device']}"))
    if args.out:
        from vdrt.fsutil import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
    return 0


def oracle():
    """THE lazy import of the quality oracle (evaluation code, outside the runtime: vdrt.export.tiny)."""
    from vdrt.export.tiny.quality import oracle as module

    return module


def quality_row(args) -> dict:
    from vdrt.bench.meta import DEFAULT_MODEL, device_of, find_card, run_meta
    from vdrt.errors import ConfigError

    name = args.model or DEFAULT_MODEL
    card = find_card(name, args.weights_dir)
    if card is None:
        raise ConfigError(f"no model card {name!r} is installed; train it (python -m vdrt.export.tiny.train) and "
                          "pass --weights-dir DIR, or set VDRT_WEIGHTS_DIR")
    from vdrt.export.tiny.quality.generate import CardGenerator

    device, o = device_of(args.device), oracle()
    gen = CardGenerator.from_card(card, device=device, random_init=args.random, batch_size=args.batch or 64,
                                  num_steps=args.steps, guidance=args.guidance)
    log.info("quality: %s (%s) on %d test clips, %s", gen.name, gen.settings.describe(), args.clips, device)
    result = o.row(o.evaluate(gen, n_clips=args.clips, seed=args.seed))
    summary = result.pop("summary")
    return {"bench": "quality", "case": f"test[0:{args.clips}]", "impl": f"{gen.name} {gen.settings.describe()}",
            **result, **summary, **run_meta(device)}


def build_engine(module, backend: str, precision: str, size: tuple, device):
    """An aoti/onnx engine of `module` fixed at the benchmark's (batch, frames, height, width) (vdrt.export)."""
    import tempfile

    from vdrt.export import build
    from vdrt.export.shapes import shapes_from_pixels

    batch, f, h, w = size
    shapes = {**shapes_from_pixels(module.config, str(f), str(h), str(w)), "batch": batch}
    out = Path(tempfile.mkdtemp(prefix="vdrt-bench-")) / "engine"
    return build(module, backend, out, precision=precision, shapes=shapes, device=None if backend == "aoti" else device)
