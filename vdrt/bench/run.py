"""One `vdrt bench` timing run: a checked `BenchPlan` -> rows (step rows, peers, denoise loops, the end-to-end clip).

For each shape of the plan: one step row per backend x attention choice (`vdrt.bench.step`), the
peers, the denoise loops of the cache policies (`vdrt.bench.loops`), and the end-to-end clip
(`vdrt.bench.e2e`). Every row carries the run's metadata (`vdrt.bench.meta.run_meta`: device,
commit, date, the run's start time, versions), its `case` (batch x frames x height x width and
precision; loops and the clip name their steps) and `kind` (step | peer | loop | e2e).
"""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)


def bench_rows(plan, build_engine: Callable | None = None) -> list[dict]:
    """All rows of `plan`; `build_engine(module, backend, precision, size, device)` makes aoti/onnx engines (the
    CLI passes the exporter's; the runtime never imports it)."""
    from vdrt.bench.meta import run_meta
    from vdrt.bench.step import load_target
    from vdrt.pipeline.sources import PRECISIONS

    meta = run_meta(plan.device)
    dtype = PRECISIONS[plan.precision]
    target = load_target(plan.model, plan.weights_dir, plan.device, dtype)
    rows = []
    for shape in plan.shapes:
        size = tuple(s or d for s, d in zip(shape, target.default_size))
        rows += shape_rows(plan, target, size, meta, build_engine)
    return rows


def shape_rows(plan, target, size: tuple, meta: dict, build_engine=None) -> list[dict]:
    from vdrt.bench.ceilings import ceilings
    from vdrt.bench.step import count_flops, step_inputs
    from vdrt.pipeline.sources import PRECISIONS

    f, h, w = size
    dtype = PRECISIONS[plan.precision]
    x = step_inputs(target.config, plan.batch, f, h, w, plan.device, dtype)
    flops, ceiling = count_flops(target.config, x), ceilings(plan.device, plan.precision)
    case = f"{plan.batch}x{f}x{h}x{w} {plan.precision}"
    common = {"bench": "step", "model": target.name, "case": case, "shape": [plan.batch, f, h, w],
              "precision": plan.precision, **meta}
    rows = [{**common, **r} for r in _steps(plan, target, x, (plan.batch, f, h, w), flops, ceiling, build_engine)]
    if plan.caches:
        rows += _loops(plan, target, x, common)
    if plan.steps:  # the clip runs on the first backend (its engine comes from the build cache)
        from vdrt.bench.e2e import e2e_row
        from vdrt.bench.step import with_backend

        first = with_backend(target, plan.backends[0], plan.precision, (plan.batch, f, h, w), plan.device,
                             plan.attentions[0], build_engine)
        row = e2e_row(plan, first, size, dtype)
        rows.append({**common, "bench": "e2e", "case": f"1x{f}x{h}x{w} {plan.precision}, clip of {plan.steps} steps",
                     "shape": [1, f, h, w], **row})
    return rows


def _steps(plan, target, x: tuple, size: tuple, flops: float, ceiling: dict, build_engine) -> list[dict]:
    """Step rows (backend x attention), then the peers; rel_err_vs_first against the first row's output.
    `size`: (batch, frames, height, width) in pixels, what an engine is built for."""
    from vdrt.bench.step import peer_row, rel_err, step_row, with_backend

    rows, ref = [], None
    for backend in plan.backends:
        for attention in plan.attentions:
            t = with_backend(target, backend, plan.precision, size, plan.device, attention, build_engine)
            row, out = step_row(t, x, attention, plan, flops, ceiling)
            ref = out if ref is None else ref
            rows.append({**row, "rel_err_vs_first": rel_err(out, ref)})
    for peer in plan.peers:
        row, out = peer_row(peer, target, x, plan, flops, ceiling)
        rows.append({**row, "rel_err_vs_first": rel_err(out, ref)})
    return rows


def _loops(plan, target, x: tuple, common: dict) -> list[dict]:
    from vdrt.bench.loops import loop_rows

    rows = loop_rows(plan, target, x, _calibration(plan, target))
    return [{**common, "bench": "loop", "case": f"{common['case']}, {r['steps']}-step loop, guidance "
             f"{_guidance(plan, target):g}", **r} for r in rows]


def _guidance(plan, target) -> float:
    return target.defaults.guidance if plan.guidance is None else plan.guidance


def _calibration(plan, target) -> dict | None:
    """The model's kept calibration (vdrt calibrate), when the model is found by name."""
    if plan.weights_dir is not None:
        log.warning("bench: --weights-dir cards are not looked up for a cache calibration; policies use defaults")
        return None
    from vdrt.bench.calibrate import calibration_for

    return calibration_for(plan.model or target.name)
