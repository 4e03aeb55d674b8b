"""What every benchmark shares: run metadata, median timing, JSON rows and a printed table.

A benchmark is an experiment: Config -> Result rows with `bench`, `case`, `impl`, `ms`,
`device`, `commit`, `date` (plus a metric: tflops / gbps, and rel_err where checked).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
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
    from vdrt.fsutil import git_commit

    return git_commit(Path(__file__).parent)


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
    """`fn` replayed from a CUDA graph (vdrt's graph cache), captured lazily at the first call after two
    warm-up calls on a side stream: a replay costs GPU time only, without Python or launch overhead. The
    output is not cloned (a benchmark times the replay alone)."""
    from vdrt.engines.graphs import GraphCache

    cache = GraphCache(lambda inputs: fn(), warmup=2, clone_output=False)
    return lambda: cache([])


def write_rows(rows: list[dict], out: str | None) -> None:
    rows = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in rows]
    if out:
        from vdrt.fsutil import atomic_path

        with atomic_path(Path(out)) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
    print(table(rows))


def table(rows: list[dict]) -> str:
    """The rows as vdrt's one table (vdrt.tables): bench, case, impl, ms, then every metric column."""
    from vdrt.tables import table as print_table

    cols = ["bench", "case", "impl", "ms"] + sorted({k for r in rows for k in r} - {
        "bench", "case", "impl", "ms", "device", "commit", "date", "torch"})
    return print_table(rows, [(c, c) for c in cols])
