"""First-block cache (ParaAttention's FBCache): block 0 always runs; its residual decides for the rest.

Per row and step: run block 0, and compare its residual h1 - x with the one of the last step at
which the row ran the whole stack (relative L1). Under the threshold, the rest of the stack is
skipped: out = h1 + the kept residual of blocks 1..n-1 (out - h1 of that step). Otherwise the rest
runs and both residuals are kept. Needs no calibration: the threshold is the relative change itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vdrt.models.stepcache import Stack
from vdrt.samplers.policies.caching import CachePolicy, previous


@dataclass
class FirstBlockCache(CachePolicy):
    name: ClassVar[str] = "fbcache"

    def decide(self, stack: Stack):
        x = stack.hidden
        h1 = stack.run(x, None, 0, 1)  # (B, L, D) after block 0
        first = h1.float() - x.float()
        skip = [rel is not None and rel < self.threshold and "residual" in row
                for row, rel in zip(self.rows, previous(self.rows, "first", first))]
        for row, r, s in zip(self.rows, first, skip):
            if not s:
                row["first"] = r
        return self.finish(stack, h1, skip, start=1)
