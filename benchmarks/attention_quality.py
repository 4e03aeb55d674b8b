"""Quality cost of vdrt's lossy attention on an embedded Wan-architecture model: the oracle, paired.

    python benchmarks/attention_quality.py --weights-dir .carry/world --model vdrt-tiny-wan-teacher \
        --clips 16 --steps 10 --out benchmarks/results/cpu/attention_quality.json

One card, sampled with dense attention (the reference) and with each lossy choice on the SAME seeds:
`vdrt-int8` (on the CPU: the kernel's numerics emulated in float64), `vdrt-sparse` at 50% and 25%
density, `vdrt-sparse-int8` at 25%, and a deliberately too-small sparse window (one tile: the
oracle must flag it). Every variant is scored by the oracle (vdrt.export.tiny.quality: adherence,
coherence, extend metrics) and compared with the dense run (paired bootstrap intervals, fidelity
PSNR); a "worse" verdict names the metrics. --steps lowers the teacher's step count for CPU time; the
comparison stays paired (same settings, same noise), which is what judges the attention.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from common import meta

log = logging.getLogger("attention_quality")


def variants() -> list[tuple[str, dict]]:
    from vdrt.sparse import SparseConfig

    return [
        ("dense (sdpa)", {}),
        ("vdrt-int8", {"attention": "vdrt-int8"}),
        ("vdrt-sparse 50%", {"attention": "vdrt-sparse", "sparse": SparseConfig(density=0.5)}),
        ("vdrt-sparse 25%", {"attention": "vdrt-sparse", "sparse": SparseConfig(density=0.25)}),
        ("vdrt-sparse-int8 25%", {"attention": "vdrt-sparse-int8", "sparse": SparseConfig(density=0.25)}),
        ("vdrt-sparse one-tile window (too small)", {"attention": "vdrt-sparse", "sparse": SparseConfig(window=(1, 1, 1))}),
    ]


def main(argv=None) -> int:
    from vdrt.export.tiny.data.world import Geometry
    from vdrt.export.tiny.quality import oracle
    from vdrt.export.tiny.quality.compare import compare, report_table
    from vdrt.export.tiny.quality.generate import CardGenerator

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", required=True)
    p.add_argument("--model", default="vdrt-tiny-wan-teacher")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="override the card's step count (CPU time)")
    p.add_argument("--tasks", default="t2v,extend")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", default=None, help="comma-separated substrings: the variants to run besides dense")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    card = Path(args.weights_dir) / f"{args.model}.json"
    geo, tasks = Geometry(), tuple(args.tasks.split(","))
    results, reports, rows = [], [], []
    keep = [o for o in (args.only or "").split(",") if o]
    for name, ops in variants():
        if keep and ops and not any(o in name for o in keep):
            continue
        gen = CardGenerator.from_card(card, device=args.device, batch_size=args.clips, ops=ops, num_steps=args.steps)
        log.info("%s: %s", name, gen.settings.describe())
        results.append(oracle.evaluate(gen, args.clips, 0, geo, tasks=tasks, name=name))
        if len(results) > 1:
            reports.append(compare(results[0], results[-1]))
            print(report_table(reports[-1]))
    print(oracle.table(results))
    case = f"{args.model} test[0:{args.clips}] {geo.shape} steps={args.steps or 'card'}"
    for r in results:
        rows.append({"bench": "attention-quality", "case": case, "impl": r["name"], **oracle.row(r), **meta()})
    for rep in reports:
        rows.append({"bench": "attention-quality-compare", "case": case, "impl": rep["candidate"],
                     "verdict": rep["verdict"], "worse": rep["worse"], "fidelity": rep["fidelity"],
                     "metrics": rep["metrics"], **meta()})
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
