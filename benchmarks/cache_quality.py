"""Quality of the step-cache policies on an embedded model: skipped steps x fidelity x the oracle's scores.

    python benchmarks/cache_quality.py --model vdrt-tiny-teacher --clips 32 --out cache_quality.json
    python benchmarks/cache_quality.py --policies teacache:0.05,teacache:0.1,fbcache:0.1 --steps 20 --clips 4 --device cpu

For each policy and threshold, the quality oracle (`vdrt.export.tiny.quality`) generates its held-out
clips (t2v, extend, interpolate) with the same per-clip noise as the uncached reference, and reports:

- `skipped`: the fraction of row-steps that reused the cached residual (CFG rows counted apart);
- fidelity against the uncached clips of the same seeds: pooled PSNR and mean SSIM per task
  (`compare.fidelity`), the t2v ones being the plain "same seed, with and without caching" number;
- the oracle's headline metrics (t2v adherence, extend / interpolate PSNR: forecasting) of both, and
  the paired-bootstrap verdict of `compare` (worse / same or better).

The policy runs inside the oracle's generator: its denoiser is wrapped so that each call is one
step of the loop (`Stepped`: reset at step 0, `wrap`/`observe` around each call), as the one loop
runs hooks. The model's kept calibration (`vdrt calibrate MODEL`) is used; `--calibrate` fits it
first. Rows go to --out as JSON; a markdown table is printed.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("cache_quality")

POLICIES = "teacache:0.05,teacache:0.1,teacache:0.2,magcache:0.05,magcache:0.1,fbcache:0.05,fbcache:0.1"
HEADLINE = ("t2v.adherent", "extend.psnr", "extend.ssim", "interpolate.psnr")


class Stepped(torch.nn.Module):
    """A denoiser whose calls are the steps of one loop run after another, under a cache policy's step hook."""

    def __init__(self, inner: torch.nn.Module, policy, num_steps: int):
        super().__init__()
        self.inner, self.policy, self.num_steps = inner, policy, num_steps
        self.calls, self.totals = 0, {"run": 0, "skipped": 0}

    @property
    def config(self):
        return self.inner.config

    def forward(self, x, t, ctx, cond=None):
        from vdrt.samplers.loop import Step

        i = self.calls % self.num_steps
        if i == 0:
            self._collect()
            self.policy.reset(self.num_steps)
        step = Step(i, self.num_steps, t, x, {})
        with self.policy.wrap(step):
            out = self.inner(x, t, ctx, cond=cond)
        self.policy.observe(step, out)
        self.calls += 1
        return out

    def _collect(self) -> None:
        for k in self.totals:
            self.totals[k] += self.policy.stats[k]
        self.policy.stats = {"run": 0, "skipped": 0}

    def skipped_fraction(self) -> float:
        self._collect()
        total = self.totals["run"] + self.totals["skipped"]
        return self.totals["skipped"] / total if total else 0.0


def generator(args):
    from vdrt import embedded
    from vdrt.export.tiny.quality.generate import CardGenerator

    card = embedded.card_path(args.model)
    if card is None:
        raise SystemExit(f"no embedded model {args.model!r}; embedded: {embedded.names()}")
    return CardGenerator.from_card(card, device=args.device, batch_size=args.batch, num_steps=args.steps,
                                   guidance=args.guidance)


def evaluate(gen, den, policy, args) -> tuple[dict, float]:
    """The oracle's result with `policy` (None: uncached) and the skipped fraction."""
    from vdrt.export.tiny.quality.oracle import evaluate as oracle

    n = gen.settings.num_steps
    wrapped = Stepped(den, policy, n) if policy is not None else den
    gen.denoiser = wrapped
    t0 = time.perf_counter()
    result = oracle(gen, n_clips=args.clips, seed=args.seed)
    result["seconds"] = time.perf_counter() - t0
    return result, wrapped.skipped_fraction() if policy is not None else 0.0


def row(spec, skipped: float, ref: dict, cand: dict) -> dict:
    from vdrt.export.tiny.quality.compare import compare

    rep = compare(ref, cand)
    fid = rep["fidelity"]
    metrics = {m["metric"]: m for m in rep["metrics"]}
    out = {"policy": spec.name, "threshold": spec.threshold, "skipped": skipped, "verdict": rep["verdict"],
           "seconds": cand["seconds"], "ref_seconds": ref["seconds"]}
    for task, f in sorted(fid.items()):
        out[f"{task}_fidelity_psnr"], out[f"{task}_fidelity_ssim"] = f["psnr"], f["ssim"]
    for name in HEADLINE:
        if name in metrics:
            out[name], out[f"{name}_ref"] = metrics[name]["candidate"], metrics[name]["reference"]
    return out


def markdown(rows: list[dict]) -> str:
    cols = [c for c in ("policy", "threshold", "skipped", "t2v_fidelity_psnr", "t2v_fidelity_ssim",
                        "extend_fidelity_psnr", "t2v.adherent", "t2v.adherent_ref", "extend.psnr", "extend.psnr_ref",
                        "interpolate.psnr", "verdict", "seconds") if any(c in r for r in rows)]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r.get(c, "-")) for c in cols) + " |" for r in rows])


def calibration(args) -> dict | None:
    from vdrt.bench.calibrate import CalibrationRun, calibrate, calibration_for

    if args.calibrate:
        import vdrt

        pipe = vdrt.Pipeline.from_pretrained(args.model, device=args.device)
        cal, path = calibrate(pipe, args.model, CalibrationRun(num_steps=args.steps, guidance=args.guidance))
        log.info("calibrated %s -> %s", args.model, path)
        return cal
    return calibration_for(args.model)


def main(argv=None) -> int:
    from vdrt.bench.meta import run_meta
    from vdrt.samplers.policies.cachespec import parse_list

    args = parse_args(argv)
    specs = [s for s in parse_list(args.policies) if s is not None]
    cal = calibration(args)
    gen = generator(args)
    den = gen.denoiser
    ref, _ = evaluate(gen, den, None, args)
    rows = []
    for spec in specs:
        cand, skipped = evaluate(gen, den, spec.build(cal), args)
        rows.append({**row(spec, skipped, ref, cand), "model": args.model, "clips": args.clips,
                     "settings": gen.settings.describe(), "calibrated": cal is not None, **run_meta(gen.device)})
        log.info("%s: skipped %.0f%%, verdict %s", spec, 100 * skipped, rows[-1]["verdict"])
    print(markdown(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vdrt-tiny-teacher", help="embedded model card (default vdrt-tiny-teacher)")
    ap.add_argument("--policies", default=POLICIES, help=f"comma list (default {POLICIES})")
    ap.add_argument("--clips", type=int, default=32, help="held-out clips per task")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the card's)")
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the card's)")
    ap.add_argument("--batch", type=int, default=64, help="clips per generator call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--calibrate", action="store_true", help="fit the model's calibration first (vdrt calibrate)")
    ap.add_argument("--out", default=None, help="JSON rows")
    return ap.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s")
    raise SystemExit(main())
