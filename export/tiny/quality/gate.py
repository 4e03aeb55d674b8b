"""The quality gate: the default model at fixed seeds on the CPU, held to bounds set from measured spread.

    python -m vdrt.export.tiny.quality.gate             # check (what tests/.../quality/test_gate.py runs)
    python -m vdrt.export.tiny.quality.gate --measure   # re-measure, rewrite the bounds (after a new default)

The bounds file (`tests/export/tiny/quality/gate.json`, from the repository root; `--file`)
holds the model, the clips, the tasks and, per metric, the value
measured here and its run-to-run spread: the largest difference between runs with 1 or 2 torch
threads, batches of all clips or 2, and the CPU kernels at each SIMD level this CPU has (ATen's
`ATEN_CPU_CAPABILITY` default / avx2 / avx512 with MKL and oneDNN held to the same level, in
subprocesses: the code paths another CI CPU would take). These change the float summation order
only (the noise is paired, so nothing else changes). A check fails when a metric is worse than its
value by more than its tolerance: the spread, at least FLOOR, and for a share of clips at least one
clip (the resolution of a share). FLOOR (0.05 dB, 0.003 SSIM, 0.3 px, 0.01 IoU, 0.5 jumps a clip)
is a float allowance of the order of the oracle's margins (`compare.MARGINS`): measured, it lies 4
orders of magnitude above the spread (2.3e-6 dB, 6.7e-7 SSIM over 7 configurations) and
well under the smallest damage the gate must catch (int4 weights: extend SSIM -0.145, see
docs/quality.md), so neither a faster CPU nor float reordering trips it, and damage does.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from vdrt.errors import ConfigError

log = logging.getLogger(__name__)

GATE_FILE = Path("tests/export/tiny/quality/gate.json")
METRICS = {"t2v.colour": 1, "t2v.shape": 1, "t2v.size": 1, "t2v.motion": 1, "t2v.count_ok": 1, "t2v.coherent": 1,
           "t2v.jumps": -1, "extend.psnr": 1, "extend.ssim": 1, "extend.centroid_error": -1, "extend.iou": 1}
FLOOR = {"extend.psnr": 0.05, "extend.ssim": 0.003, "extend.centroid_error": 0.3, "extend.iou": 0.01,
         "t2v.jumps": 0.5}
SHARES = ("t2v.colour", "t2v.shape", "t2v.size", "t2v.motion", "t2v.count_ok", "t2v.coherent")


def run(model: str, clips: int, tasks, threads: int = 1, batch: int | None = None, transform=None) -> dict:
    """The oracle's summary for the embedded `model` on the CPU (fp32, torch ops, the card's sampling defaults),
    threads and batch given; `transform(denoiser)` damages it on purpose (the gate's own test)."""
    from vdrt import embedded
    from vdrt.export.tiny.quality.generate import CardGenerator
    from vdrt.export.tiny.quality.oracle import evaluate

    path = embedded.card_path(model)
    if path is None:
        raise ConfigError(f"the gate's model {model!r} is not an embedded model ({embedded.names()})")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = CardGenerator.from_card(path, device="cpu", batch_size=batch or clips, transform=transform)
        return evaluate(gen, clips, 0, tasks=tuple(tasks), workers=1)["summary"]
    finally:
        torch.set_num_threads(old)


def tolerance(metric: str, spread: float, clips: int) -> float:
    floor = 1.0 / clips if metric in SHARES else FLOOR.get(metric, 0.0)
    return max(spread, floor)


def check(summary: dict, gate: dict) -> list[str]:
    """Problems: metrics worse than the gate's value by more than their tolerance (empty = pass)."""
    out = []
    for metric, m in gate["metrics"].items():
        got, want = summary.get(metric), m["value"]
        if got is None or want is None:
            if got != want:
                out.append(f"{metric}: {got} where the gate measured {want}")
            continue
        worse_by = (want - got) * METRICS[metric]
        tol = tolerance(metric, m["spread"], gate["clips"])
        if worse_by > tol:
            out.append(f"{metric}: {got:.4f}, worse than the gate's {want:.4f} by {worse_by:.4f} (> {tol:.4f})")
    return out


# ATen's SIMD levels (torch.backends.cpu.get_cpu_capability), with MKL's and oneDNN's GEMM / conv kernels held
# to the same level: the code paths another CI CPU would take
CAPABILITIES = {"default": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
                "avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
                "avx512": {"MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}}


def run_at(capability: str, model: str, clips: int, tasks) -> dict | None:
    """`run` in a subprocess with the CPU kernels at `capability` (None when this CPU lacks it)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, **CAPABILITIES[capability]}
    argv = [sys.executable, "-m", "vdrt.export.tiny.quality.gate", "--summary", "--model", model,
            "--clips", str(clips), "--tasks", ",".join(tasks)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    if got["capability"].lower() != capability:
        log.info("gate: this CPU has no %s kernels (ran %s): skipped", capability, got["capability"])
        return None
    return got["summary"]


def measure(model: str, clips: int, tasks) -> dict:
    """The spread configurations (threads x batch in this process, then each SIMD level in a subprocess);
    the gate is the 1-thread, full-batch run plus the spread."""
    runs = [run(model, clips, tasks, t, b) for t in (1, 2) for b in (clips, 2)]
    runs += [r for r in (run_at(c, model, clips, tasks) for c in CAPABILITIES) if r is not None]
    log.info("gate: %d runs (threads x batch, SIMD levels)", len(runs))
    metrics = {}
    for k in METRICS:
        vals = [r.get(k) for r in runs]
        finite = [v for v in vals if v is not None]
        metrics[k] = {"value": runs[0].get(k), "spread": (max(finite) - min(finite)) if finite else 0.0}
    return {"model": model, "clips": clips, "tasks": list(tasks), "seed": 0, "runs": len(runs), "metrics": metrics}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vdrt.export.tiny.quality.gate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", action="store_true", help="re-measure and rewrite gate.json")
    p.add_argument("--model", default=None, help="embedded model (default: the gate's)")
    p.add_argument("--clips", type=int, default=None)
    p.add_argument("--file", type=Path, default=GATE_FILE, help="the bounds (JSON)")
    p.add_argument("--summary", action="store_true", help="print one run's summary as JSON (what --measure "
                   "runs per SIMD level)")
    p.add_argument("--tasks", default=None, help="with --summary: comma list (default: the gate's)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.summary:
        if not (args.model and args.clips and args.tasks):
            raise ConfigError("--summary needs --model, --clips and --tasks")
        summary = run(args.model, args.clips, args.tasks.split(","))
        print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "summary": summary}))
        return 0
    gate = json.loads(args.file.read_text())
    model, clips = args.model or gate["model"], args.clips or gate["clips"]
    if args.measure:
        gate = measure(model, clips, gate["tasks"])
        args.file.write_text(json.dumps(gate, indent=1) + "\n")
        print(json.dumps(gate, indent=1))
        return 0
    problems = check(run(model, clips, gate["tasks"]), gate)
    print("\n".join(problems) or f"gate passed: {model}, {clips} clips")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
