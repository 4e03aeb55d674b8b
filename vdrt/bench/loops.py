"""`vdrt bench --cache none,teacache:0.1,...`: whole denoise loops with each step-cache policy, against no caching.

    vdrt bench wan2.1-t2v-1.3b --frames 81 --height 480 --width 832 --cache teacache:0.1,magcache:0.1 \
        --cache-steps 50 --guidance 1

One row per (attention choice, policy): N steps (`--cache-steps`, default the model's) of the
one sampling loop over the eager model, from the same noise, with CFG when the guidance (`--guidance`,
default the model's) asks for it. Fields: `ms` (the loop), `ms_per_step`, `skipped_fraction` (of
the row-steps), `speedup_vs_uncached` and `rel_err_vs_uncached` (the final latents against the
uncached loop's, same noise: the policy's drift on these weights; random weights drift differently
from trained ones). A 2-step loop first warms up the loop's shapes (CFG doubles the batch). Each
loop is timed once (a loop is many calls; a calibrated policy uses the model's calibration).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def loop_rows(plan, target, x: tuple, calibration: dict | None) -> list[dict]:
    """The loop rows of every attention choice and policy in `plan` (the uncached loop first)."""
    from vdrt.bench.step import rel_err
    from vdrt.bench.timing import measure

    n = plan.cache_steps or target.defaults.num_steps
    timing = plan.timing.replace(warmup=0, iterations=1, duration=None)
    rows = []
    for attention in plan.attentions:
        _loop(plan, target, x, attention, None, 2)  # warm-up of the loop's shapes
        base = None
        for spec in plan.caches:
            policy = spec.build(calibration) if spec is not None else None
            res, out = measure(lambda: _loop(plan, target, x, attention, policy, n), timing, plan.device)
            base = base or (res["ms"], out)
            rows.append({"impl": f"vdrt-torch {attention} {spec or 'no cache'}", "kind": "loop", "backend": "torch",
                         "attention": attention, "cache": str(spec or "none"), "steps": n, **res,
                         "ms_per_step": res["ms"] / n, "skipped_fraction": policy.skipped_fraction if policy else 0.0,
                         "speedup_vs_uncached": base[0] / res["ms"], "rel_err_vs_uncached": rel_err(out, base[1])})
    return rows


def _loop(plan, target, x: tuple, attention: str, policy, n: int) -> torch.Tensor:
    """N steps from x's latents (as noise) with x's context (negative: zeros) and conditioning."""
    from vdrt import ops, samplers
    from vdrt.samplers import CFGModel, Guidance, sample

    d = target.defaults
    guidance = d.guidance if plan.guidance is None else plan.guidance
    name = "euler" if d.sampler == "fewstep" else d.sampler  # a distilled model's few timesteps do not stretch
    sampler = samplers.get(name, shift=d.shift, generator=0)
    latents, _, context, cond = x
    model = CFGModel(target.fn, context, None, Guidance(guidance), cond=cond, device=plan.device, dtype=latents.dtype)
    with ops.use(**({} if attention == "auto" else {"attention": attention})):
        return sample(model, latents.float(), sampler, n, hooks=[policy] if policy else [], progress=False)
