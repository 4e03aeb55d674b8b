"""What every benchmark shares: run metadata, median timing, JSON rows and a printed table.

A benchmark is an experiment: Config -> Result rows with `bench`, `case`, `impl`, `ms`,
`device`, `commit`, `date` (plus a metric: tflops / gbps, and rel_err where checked).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
from pathlib import Path


@dataclasses.dataclass
class Row:
    """The columns every benchmark row starts with; benchmarks subclass it with their metrics."""

    bench: str
    case: str
    impl: str
    ms: float | None
    device: str
    commit: str
    date: str
    torch: str


def commit() -> str:
    if os.environ.get("VDRT_COMMIT"):
        return os.environ["VDRT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name() -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    p = torch.cuda.get_device_properties(0)
    return f"{p.name} (sm_{p.major}{p.minor})"


def meta() -> dict:
    import torch

    return {"device": device_name(), "commit": commit(), "date": datetime.date.today().isoformat(),
            "torch": torch.__version__}


def median_ms(fn, warmup_ms: int = 100, rep_ms: int = 500) -> float:
    """Median milliseconds of fn() on the GPU, timed with events (triton.testing.do_bench)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def graphed(fn):
    """`fn` replayed from a CUDA graph, captured lazily at the first call (after two warm-up calls on a
    side stream): a replay costs GPU time only, without Python or launch overhead."""
    import torch

    state = {}

    def replay():
        if "graph" not in state:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: compile, autotune, cuBLASLt plan choice
                    fn()
            torch.cuda.current_stream().wait_stream(side)
            state["graph"] = torch.cuda.CUDAGraph()
            with torch.cuda.graph(state["graph"]):
                state["out"] = fn()
        state["graph"].replay()
        return state["out"]
    return replay


def write_rows(rows: list[dict], out: str | None) -> None:
    rows = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in rows]
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(rows, indent=1))
    print(table(rows))


def table(rows: list[dict]) -> str:
    cols = ["bench", "case", "impl", "ms"] + sorted({k for r in rows for k in r} - {
        "bench", "case", "impl", "ms", "device", "commit", "date", "torch"})
    lines = ["  ".join(f"{c:>14}" for c in cols)]
    for r in rows:
        lines.append("  ".join(f"{_fmt(r.get(c)):>14}" for c in cols))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)[:40]
