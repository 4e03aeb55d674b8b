"""Paired comparison of two oracle results (a reference configuration and a candidate) on the same clips.

    ref = evaluate(CardGenerator.from_card(card), 256)
    cand = evaluate(CardGenerator.from_card(card, transform=int4_weights), 256)
    report = compare(ref, cand)            # {"verdict": "worse" | "same or better", "metrics": [...], ...}

Both results come from the same clips and the same per-clip noise seeds, so every per-clip
difference is paired. For each headline metric: the reference and candidate values, their
difference (candidate - reference), and a 95% paired-bootstrap interval (clips resampled with
replacement, `n_boot` times; PSNR from the resampled mean MSE). A metric is `worse` when the whole
interval lies on the bad side beyond its margin (`MARGINS`: 0 for the shares of clips, so any
significant drop counts; a float-rounding allowance for the frame metrics, so a bitwise-different
but equivalent kernel is not flagged; `margins=` overrides).
`fidelity`: PSNR (pooled) and SSIM of the candidate's clips against the reference's clips, per task:
how far the outputs moved; `min_fidelity_db` (default None: reported only) flags a drift beyond it.
"""
from __future__ import annotations

import numpy as np

from vdrt.errors import ConfigError

# metric -> +1 if higher is better, -1 if lower is better
DIRECTION = {"t2v.adherent": 1, "t2v.colour": 1, "t2v.shape": 1, "t2v.size": 1, "t2v.motion": 1, "t2v.count_ok": 1,
             "t2v.coherent": 1, "t2v.jumps": -1, "t2v.extra": -1, "extend.psnr": 1, "extend.ssim": 1,
             "extend.centroid_error": -1, "extend.iou": 1, "interpolate.psnr": 1, "interpolate.ssim": 1,
             "interpolate.centroid_error": -1, "interpolate.iou": 1}


MARGINS = {"extend.psnr": 0.05, "interpolate.psnr": 0.05, "extend.ssim": 0.002, "interpolate.ssim": 0.002,
           "extend.centroid_error": 0.1, "interpolate.centroid_error": 0.1, "extend.iou": 0.005,
           "interpolate.iou": 0.005}


def _values(result: dict, metric: str):
    task, key = metric.split(".")
    cols = result["per_clip"].get(task)
    if cols is None:
        return None
    src = cols["mse"] if key == "psnr" else cols.get(key)
    return None if src is None else np.array([np.nan if v is None else float(v) for v in src])


def _stat(v: np.ndarray, metric: str) -> float:
    """The pooled value of per-clip values (NaN = not scored): a mean, or the PSNR of the mean MSE."""
    from vdrt.export.tiny.quality.metrics import psnr_of

    if np.isnan(v).all():
        return float("nan")
    return psnr_of(float(np.nanmean(v))) if metric.endswith(".psnr") else float(np.nanmean(v))


def paired_interval(ref: np.ndarray, cand: np.ndarray, metric: str, n_boot: int = 2000, seed: int = 0):
    """(difference, low, high): candidate - reference and its 95% paired-bootstrap interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ref), size=(n_boot, len(ref)))
    with np.errstate(invalid="ignore"):
        diffs = np.array([_stat(cand[i], metric) - _stat(ref[i], metric) for i in idx])
    diffs = diffs[np.isfinite(diffs)]
    d = _stat(cand, metric) - _stat(ref, metric)
    if not len(diffs):
        return d, None, None
    return d, float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def fidelity(ref: dict, cand: dict) -> dict:
    """Per task: pooled PSNR and mean SSIM of the candidate's clips against the reference's."""
    from vdrt.export.tiny.quality.metrics import mse, psnr_of, ssim

    out = {}
    for task in ref["outputs"].keys() & cand["outputs"].keys():
        a, b = ref["outputs"][task], cand["outputs"][task]
        out[task] = {"psnr": psnr_of(float(np.mean([mse(x, y) for x, y in zip(a, b)]))),
                     "ssim": float(np.mean([ssim(x, y) for x, y in zip(a, b)]))}
    return out


def _check(ref: dict, cand: dict) -> None:
    same = [ref[k] == cand[k] for k in ("clips", "geometry", "seed", "known")]
    if not all(same):
        raise ConfigError("compare needs results on the same clips, geometry, seed and known frames; got "
                          f"{[ref[k] for k in ('clips', 'geometry', 'seed', 'known')]} and "
                          f"{[cand[k] for k in ('clips', 'geometry', 'seed', 'known')]}")


def compare(ref: dict, cand: dict, margins: dict | None = None, min_fidelity_db: float | None = None,
            n_boot: int = 2000) -> dict:
    """The paired report of `cand` against `ref` (see the module doc)."""
    _check(ref, cand)
    margins = {**MARGINS, **(margins or {})}
    rows = []
    for metric, sign in DIRECTION.items():
        r, c = _values(ref, metric), _values(cand, metric)
        if r is None or c is None:
            continue
        d, lo, hi = paired_interval(r, c, metric, n_boot)
        bad_side = hi if sign > 0 else (None if lo is None else -lo)
        worse = bad_side is not None and bad_side < -margins.get(metric, 0.0)
        rows.append({"metric": metric, "reference": _stat(r, metric), "candidate": _stat(c, metric), "diff": d,
                     "low": lo, "high": hi, "worse": bool(worse)})
    fid = fidelity(ref, cand)
    drift = min_fidelity_db is not None and any(v["psnr"] < min_fidelity_db for v in fid.values())
    worse = [r["metric"] for r in rows if r["worse"]] + (["fidelity"] if drift else [])
    return {"reference": ref["name"], "candidate": cand["name"], "clips": ref["clips"], "metrics": rows,
            "fidelity": fid, "worse": worse, "verdict": "worse" if worse else "same or better"}


def report_table(report: dict) -> str:
    """Markdown: metric, reference, candidate, difference [95% CI], flag; then the fidelity lines."""
    lines = [f"{report['candidate']} vs {report['reference']} ({report['clips']} clips): **{report['verdict']}**",
             "", "| metric | reference | candidate | diff [95% CI] | |", "| --- | --- | --- | --- | --- |"]
    for r in report["metrics"]:
        ci = "" if r["low"] is None else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
        lines.append(f"| {r['metric']} | {r['reference']:.3f} | {r['candidate']:.3f} | {r['diff']:+.3f}{ci} | "
                     f"{'WORSE' if r['worse'] else ''} |")
    for task, f in report["fidelity"].items():
        lines.append(f"\nfidelity {task}: PSNR {f['psnr']:.2f} dB, SSIM {f['ssim']:.3f} against the reference")
    return "\n".join(lines)
