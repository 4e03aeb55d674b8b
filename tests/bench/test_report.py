"""vdrt.bench.report: rows kept per GPU, stale rows (another commit than the newest run of a case) never shown."""
from __future__ import annotations

import json

import pytest

from vdrt.bench import report

pytest.importorskip("matplotlib")


def row(impl, ms, commit, run, case="1x5x32x32 bf16", kind="step", **kw):
    return {"bench": "step", "model": "wan-tiny", "case": case, "impl": impl, "kind": kind, "ms": ms,
            "p90_ms": ms * 1.1, "commit": commit, "run": run, "date": run[:10], "torch": "2.13",
            "device": "NVIDIA H200", **kw}


def test_gpu_slugs():
    assert report.gpu_slug("NVIDIA H200") == "h200" and report.gpu_slug("NVIDIA H100 80GB HBM3") == "h100"
    assert report.gpu_slug("cpu") == "cpu" and report.gpu_slug("NVIDIA GeForce RTX 4090") == "geforce-rtx-4090"


def test_stale_rows_are_marked_and_never_shown(tmp_path):
    old = [row("vdrt-torch", 10.0, "aaa", "2026-11-28T10:00"), row("vdrt-aoti", 8.0, "aaa", "2026-11-28T10:00"),
           row("vdrt-torch", 30.0, "aaa", "2026-11-28T10:00", case="1x81x480x832 bf16")]
    new = [row("vdrt-torch", 9.0, "bbb", "2026-11-29T10:00"), row("diffusers-eager", 12.0, "bbb", "2026-11-29T10:00",
                                                                   kind="peer")]
    report.write_report(old, tmp_path)
    paths = report.write_report(new, tmp_path)
    kept = json.loads((tmp_path / "h200" / "rows.json").read_text())
    assert len(kept) == 5
    stale = {(r["impl"], r["case"]) for r in kept if r["stale"]}
    assert stale == {("vdrt-torch", "1x5x32x32 bf16"), ("vdrt-aoti", "1x5x32x32 bf16")}  # the other case stays
    current = report.current_rows(kept)
    assert {(r["impl"], r["commit"]) for r in current} == {("vdrt-torch", "bbb"), ("diffusers-eager", "bbb"),
                                                            ("vdrt-torch", "aaa")}
    md = (tmp_path / "h200" / "README.md").read_text()
    assert "vdrt-aoti" not in md and "| vdrt-torch | 9 |" in md and "commit bbb" in md
    assert [p.name for p in paths] == ["rows.json", "README.md", "wan-tiny.png"]
    assert (tmp_path / "h200" / "wan-tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedup_is_against_the_first_peer_else_the_first_row():
    rows = report.current_rows([row("vdrt-torch", 9.0, "c", "r1"), row("diffusers-eager", 12.0, "c", "r1", kind="peer"),
                                row("no cache", 100.0, "c", "r1", case="loop"), row("teacache", 50.0, "c", "r1",
                                                                                   case="loop")])
    by = {r["impl"]: r["speedup"] for r in rows}
    assert by == {"vdrt-torch": pytest.approx(12 / 9), "diffusers-eager": 1.0, "no cache": 1.0, "teacache": 2.0}


def test_same_run_replaces_and_newest_of_a_commit_wins(tmp_path):
    report.write_report([row("vdrt-torch", 10.0, "c", "r1")], tmp_path)
    report.write_report([row("vdrt-torch", 11.0, "c", "r1"), row("vdrt-torch", 7.0, "c", "r2")], tmp_path)
    kept = json.loads((tmp_path / "h200" / "rows.json").read_text())
    assert sorted(r["ms"] for r in kept) == [7.0, 11.0]
    assert [r["ms"] for r in report.current_rows(kept)] == [7.0]


def test_e2e_rows_are_plotted_stacked(tmp_path):
    from matplotlib.figure import Figure

    e2e = row("vdrt-torch end-to-end clip", 100.0, "c", "r1", case="clip", kind="e2e", text_ms=5.0, denoise_ms=40.0,
              decode_ms=50.0, write_ms=5.0)
    report.write_report([e2e], tmp_path)
    assert "| text ms | denoise ms | decode ms | write ms |" in (tmp_path / "h200" / "README.md").read_text()
    ax = Figure().subplots()
    report._panel(ax, "clip", report.current_rows([e2e]))
    assert [round(c.patches[0].get_width()) for c in ax.containers[:4]] == [5, 40, 50, 5]  # one bar per stage
    assert [round(c.patches[0].get_x()) for c in ax.containers[:4]] == [0, 5, 45, 95]  # stacked
