"""Calibration of the step-cache policies per model: what is recorded, how it is fitted, where it is kept.

`Recorder` is a cache policy that never skips: at every step it records, per batch row, the
relative L1 change of the first block's modulated input (TeaCache's signal), of the stack residual
(what a skip reuses), and the residual's magnitude. `fit(recorders)` turns runs into the model's
"cache_calibration" dict:

    {"teacache": {"coefficients": [c4, c3, c2, c1, c0],     # poly: input change -> residual change
                  "range": [x_min, x_max], "points": n, "r2": 0.97},  # inputs are clamped to the range
     "magcache": {"ratios": [1.0, g1, ...], "num_steps": N},  # mean residual magnitude ratio per step
     "runs": {...}}                                            # what was run (prompts, seeds, steps)

(fbcache needs none: its threshold is its own signal.) The dict is kept in a user-writable overlay,
`$VDRT_CALIBRATION_DIR` or `<vdrt cache dir>/calibration/<key>.json`, keyed by the model's identity
(`key(name, identity)`: an embedded model's weights sha256, a directory's path and config), so the
installed package is never edited. Engine manifests may carry the same dict as "cache_calibration".
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vdrt.errors import ConfigError
from vdrt.models.stepcache import Stack
from vdrt.samplers.policies.caching import CachePolicy, previous
from vdrt.samplers.policies.magcache import magnitude

log = logging.getLogger(__name__)

DEGREE = 4  # TeaCache's polynomials are quartic


@dataclass
class Recorder(CachePolicy):
    """Never skips (threshold 0); `records` holds one dict per (step, row) with the signals above."""

    name: ClassVar[str] = "calibrate"

    def reset(self, num_steps: int) -> None:
        super().reset(num_steps)
        self.records: list[dict] = []

    def decide(self, stack: Stack):
        x, probe = stack.hidden, stack.probe()
        probe_rel = previous(self.rows, "probe", probe)
        old = [row.get("residual") for row in self.rows]
        out = self.finish(stack, x, [False] * x.shape[0])
        res = out.float() - x.float()
        res_rel = previous([{"r": o} if o is not None else {} for o in old], "r", res)
        for r, row in enumerate(self.rows):
            mag = magnitude(row["residual"])
            self.records.append({"step": self.step.index, "row": r, "probe_rel": probe_rel[r],
                                 "residual_rel": res_rel[r], "magnitude": mag,
                                 "ratio": mag / row["mag"] if row.get("mag") else None})
            row["probe"], row["mag"] = probe[r], mag
        return out


def fit(records: list[list[dict]], num_steps: int, runs: dict | None = None) -> dict:
    """The "cache_calibration" dict from the records of several runs of `num_steps` steps."""
    flat = [r for run in records for r in run]
    return {"teacache": fit_teacache(flat), "magcache": fit_magcache(flat, num_steps), "runs": runs or {}}


def fit_teacache(records: list[dict]) -> dict:
    """Least-squares polynomial residual_rel ~ poly(probe_rel), degree <= 4 with at least 4 points a degree (fewer
    points: a lower degree; 4 to 7 points: a line), so a few steps never give an interpolating quartic."""
    import numpy as np

    pts = [(r["probe_rel"], r["residual_rel"]) for r in records
           if r["probe_rel"] is not None and r["residual_rel"] is not None]
    if len(pts) < 2:
        raise ConfigError("calibration needs at least 3 sampling steps (2 step-to-step changes); use more --steps")
    x, y = np.array(pts, dtype=np.float64).T
    deg = min(DEGREE, max(1, len(pts) // 4), max(1, len(set(x.round(12))) - 1))  # >= 4 points a coefficient
    coef = np.polyfit(x, y, deg)
    pred = np.polyval(coef, x)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else 1.0
    return {"coefficients": [float(c) for c in coef], "range": [float(x.min()), float(x.max())], "points": len(pts),
            "r2": r2}


def fit_magcache(records: list[dict], num_steps: int) -> dict:
    """The mean residual magnitude ratio at each step (1.0 at step 0), over rows and runs."""
    ratios = []
    for i in range(num_steps):
        rs = [r["ratio"] for r in records if r["step"] == i and r["ratio"] is not None]
        ratios.append(sum(rs) / len(rs) if rs else 1.0)
    return {"ratios": ratios, "num_steps": num_steps}


# ---------------------------------------------------------------- the overlay


def key(name: str, identity: str) -> str:
    """A file-safe key: the model's name and a hash of what identifies its weights."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(name)).name or "model")[:60]
    return f"{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def overlay_dir() -> Path:
    """$VDRT_CALIBRATION_DIR, else <vdrt cache dir>/calibration (created)."""
    env = os.environ.get("VDRT_CALIBRATION_DIR")
    if env:
        return Path(env).expanduser()
    from vdrt.fsutil import cache_dir

    return cache_dir("calibration")


def load(model_key: str) -> dict | None:
    """The calibration kept for `model_key`, or None (never calibrated)."""
    path = overlay_dir() / f"{model_key}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"calibration {path} is unreadable ({e}); delete it or run `vdrt calibrate` again") from e
    return data.get("cache_calibration", data) if isinstance(data, dict) else None


def save(model_key: str, calibration: dict) -> Path:
    """Write the calibration into the overlay atomically; returns its path."""
    from vdrt.fsutil import atomic_path

    path = overlay_dir() / f"{model_key}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": model_key, "cache_calibration": calibration}, indent=1) + "\n")
    return path
