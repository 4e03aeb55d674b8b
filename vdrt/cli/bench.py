"""`vdrt bench`: time a model's denoiser step as engineers expect (and, with --quality, run the quality oracle).

    vdrt bench factorized-tiny --device cuda                          # per-step latency table
    vdrt bench wan2.1-t2v-1.3b --backend torch,aoti --attention sdpa,vdrt-int8 --warmup 2 --iterations 20 \\
        --percentiles 50,90,99 --peers diffusers,compile --json rows.json
    vdrt bench wan2.1-t2v-1.3b --shapes 17x480x832,81x480x832 --cuda-graphs --report benchmarks/results
    vdrt bench wan2.1-t2v-1.3b --cache teacache:0.1,magcache:0.1,fbcache:0.1 --cache-steps 50 --guidance 1
    vdrt bench wan2.1-t2v-1.3b --steps 4                              # + an end-to-end clip: text/denoise/decode/write
    vdrt bench vdrt-tiny-teacher --quality --weights-dir runs/tiny --clips 256 --out q.json

Lists multiply (backends x attention choices x shapes); every flag is checked before anything
loads (vdrt/bench/plan.py). Rows: vdrt/bench/step.py (steps, peers), loops.py (--cache), e2e.py
(--steps), ceilings.py (TFLOP/s against the GPU's measured ceiling, or a GEMM/copy probe),
report.py (--report DIR: rows.json, README.md and plots per GPU; stale rows never plotted).
Quality runs on model cards found in --weights-dir, else in the embedded weight folders.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TIMING_ONLY = ("backend", "attention", "cache", "cache_steps", "cuda_graphs", "report", "peers", "shapes",
               "duration", "iterations", "percentiles", "warmup")


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
    p.add_argument("--guidance", type=float, default=None, help="CFG scale: of --cache loops and the clip (timing; "
                   "default: the model's for loops, 1 for the clip), of each clip (--quality; default: the card's)")
    _quality_flags(p.add_argument_group("quality (--quality)"))
    _timing_flags(p.add_argument_group("timing (without --quality)"))
    p.set_defaults(func=run_bench)


def _quality_flags(q) -> None:
    q.add_argument("--clips", type=int, default=64, help="held-out test clips to score")
    q.add_argument("--seed", type=int, default=0, help="generation seed")
    q.add_argument("--random", action="store_true", help="score the card's architecture with random weights")


def _timing_flags(t) -> None:
    t.add_argument("--batch", type=int, default=None, help="batch size (timing: 1; quality: clips per call, 64)")
    t.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 1); the first one is "
                   "reported apart (first ms: compile / autotune / capture)")
    t.add_argument("--iterations", type=int, default=None, help="timed calls (default 10)")
    t.add_argument("--repeats", type=int, default=None, help=argparse.SUPPRESS)  # older name of --iterations
    t.add_argument("--duration", type=float, default=None, help="time calls for this many seconds instead")
    t.add_argument("--percentiles", default=None, help="latency percentiles to report (default 50,90)")
    t.add_argument("--frames", default=None, help="pixel frames, or a comma list to sweep (default: the model's)")
    t.add_argument("--height", default=None, help="pixels, or a comma list")
    t.add_argument("--width", default=None, help="pixels, or a comma list")
    t.add_argument("--shapes", default=None, help="shapes to sweep: FxHxW,FxHxW (pixels), instead of the three above")
    t.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on CPU)")
    t.add_argument("--dtype", default=None, help=argparse.SUPPRESS)  # older spelling: float32 | bfloat16 | float16
    t.add_argument("--backend", default=None, help="comma list of torch | aoti | onnx (models are built into each "
                   "engine first; default: torch, or the engine directory's own)")
    t.add_argument("--attention", default=None, help="comma list of attention choices: auto | sdpa | vdrt | "
                   "vdrt-int8 | vdrt-sparse | vdrt-sparse-int8")
    t.add_argument("--cuda-graphs", action="store_true", help="replay each timed call through a CUDA graph")
    t.add_argument("--cache", default=None, help="comma list of step-cache policies timed over whole denoise loops "
                   "against no caching: teacache:0.1,magcache:0.1,fbcache:0.1")
    t.add_argument("--cache-steps", type=int, default=None, help="steps of each --cache loop (default: the model's)")
    t.add_argument("--peers", default=None, help="comma list of peers timed in the same process: diffusers,compile")
    t.add_argument("--report", default=None, help="folder: rows.json, README.md and plots per GPU are (re)written")


def run_bench(args) -> int:
    from vdrt import tables

    if args.quality:
        from vdrt.bench.plan import writable_file

        _refuse_timing_flags(args)
        writable_file(args.out, "--out")
        rows = [quality_row(args)]
        print(tables.pairs(rows))
        _write_rows(rows, args.out)
        return 0
    from vdrt.bench.plan import plan_from_args
    from vdrt.bench.run import bench_rows

    plan = plan_from_args(args)  # every check that needs no weights, before loading
    rows = bench_rows(plan, build_engine)
    print_rows(rows)
    _write_rows(rows, plan.out)
    if plan.report is not None:
        from vdrt.bench.report import write_report

        for path in write_report(rows, plan.report):
            print(f"wrote {path}")
    return 0


def print_rows(rows: list[dict]) -> None:
    from vdrt import tables
    from vdrt.bench.report import COLUMNS

    cases = dict.fromkeys(r["case"] for r in rows)
    for case in cases:
        group = [r for r in rows if r["case"] == case]
        cols = [(k, h) for k, h in COLUMNS if k not in ("speedup", "commit") and any(r.get(k) is not None
                                                                                     for r in group)]
        print(tables.table(group, cols, title=f"{group[0]['model']}  {case}  on {group[0]['device']}"))
        print()


def _refuse_timing_flags(args) -> None:
    from vdrt.errors import ConfigError

    given = [f"--{k.replace('_', '-')}" for k in TIMING_ONLY if getattr(args, k, None) not in (None, False)]
    if given:
        raise ConfigError(f"--quality runs the oracle; {', '.join(given)} are timing flags (drop them or --quality)")


def _write_rows(rows: list[dict], out) -> None:
    if out:
        from vdrt.fsutil import atomic_path

        with atomic_path(Path(out)) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))


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
