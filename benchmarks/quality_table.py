"""docs/quality.md's acceleration table, generated from the JSON rows (never typed by hand).

    python benchmarks/quality_table.py                 # print the table
    python benchmarks/quality_table.py --write         # replace it in docs/quality.md (between the markers)
    python benchmarks/quality_table.py --check         # exit 1 when docs/quality.md disagrees with the rows

One row per acceleration vdrt offers. Speed: the Wan2.1-1.3B step (480p x 81f, bf16, random weights) on
the H200, from `benchmarks/results/h200/` (the file is cited; "not measured" where no row exists).
Quality: the oracle's paired comparison (`benchmarks/quality.py --compare`, `benchmarks/attention_quality.py`)
of the accelerated embedded model against its reference configuration on the same clips and noise,
from `benchmarks/results/cpu/`: the verdict (the metrics flagged worse), fidelity to the reference
(pooled PSNR / mean SSIM of the t2v and extend clips), and differences with 95% paired-bootstrap
intervals of t2v adherence (all attributes right), coherence, and the extend (forecast) PSNR and
centroid error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "quality.md"
START, END = "<!-- acceleration-table:start -->", "<!-- acceleration-table:end -->"
STEP_FILE = "h200/wan_step_2026-11-29.json"
STEP_BASE = "vdrt-torch-eager (auto ops: our kernels)"  # vdrt's default step: the speed-ups' reference
ATTN_FILE = "h200/attention_2026-11-29_run2.json"
ATTN_BASE = "sdpa-cudnn"
QUALITY_FILE = "cpu/quality_accelerations_2026-11-29.json"
SPARSE_FILE = "cpu/attention_quality_sparse_2026-11-29.json"
INT8_FILE = "cpu/attention_quality_int8_2026-11-29.json"
REF = "vdrt-tiny-wan-teacher unipc-10 g4 shift3"


@dataclasses.dataclass(frozen=True)
class Accel:
    """One table row: what it is, where its speed and its quality come from."""

    name: str
    setting: str
    quality: tuple | None  # (results file, candidate name)
    step: str | None = None  # impl of a Wan-1.3B step row in STEP_FILE
    attn: str | None = None  # impl of an attention-call row in ATTN_FILE (no step row exists)
    speed_note: str = ""  # speed derived otherwise, or why none
    steps: tuple | None = None  # (steps, reference steps): the clip's denoise time from the default step row


W = "vdrt-tiny-wan-teacher@10"
ACCELS = (
    Accel("none (reference)", "fp32 torch ops, UniPC 10 steps, CFG 4", None, step=STEP_BASE),
    Accel("fp8 linears", "per-token / per-channel e4m3 (emulated on CPU)", (QUALITY_FILE, f"{W} linear=vdrt-fp8"),
          step="vdrt eager, kernels + fp8 linears"),
    Accel("int8 linears", "per-token / per-channel int8 (emulated on CPU)", (QUALITY_FILE, f"{W} linear=vdrt-int8"),
          speed_note="not measured"),
    Accel("8-bit attention", "INT8 QK, FP8 PV (emulated on CPU)", (INT8_FILE, "vdrt-int8"),
          step="vdrt, 8-bit attention"),
    Accel("sparse 3D attention", "density 50%", (SPARSE_FILE, "vdrt-sparse 50%"),
          attn="vdrt-sparse-bf16-w8s3+tma-0.50"),
    Accel("sparse 3D attention", "density 25%", (SPARSE_FILE, "vdrt-sparse 25%"),
          step="vdrt, sparse attention 25% (bf16)"),
    Accel("sparse 8-bit attention", "density 25%", (SPARSE_FILE, "vdrt-sparse-int8 25%"),
          step="vdrt, sparse 8-bit attention 25%"),
    Accel("sparse 3D attention, too small (negative control)", "one-tile window (6%)",
          (SPARSE_FILE, "vdrt-sparse one-tile window (too small)"), speed_note="not measured"),
    Accel("TeaCache", "threshold 0.1", (QUALITY_FILE, f"{W} cache teacache:0.1"), speed_note="not measured"),
    Accel("TeaCache", "threshold 0.3", (QUALITY_FILE, f"{W} cache teacache:0.3"), speed_note="not measured"),
    Accel("MagCache", "threshold 0.1", (QUALITY_FILE, f"{W} cache magcache:0.1"), speed_note="not measured"),
    Accel("MagCache", "threshold 0.3", (QUALITY_FILE, f"{W} cache magcache:0.3"), speed_note="not measured"),
    Accel("first-block cache", "threshold 0.1", (QUALITY_FILE, f"{W} cache fbcache:0.1"), speed_note="not measured"),
    Accel("first-block cache", "threshold 0.2", (QUALITY_FILE, f"{W} cache fbcache:0.2"), speed_note="not measured"),
    Accel("fewer steps", "UniPC 4 instead of 10", (QUALITY_FILE, "vdrt-tiny-wan-teacher unipc-4 g4 shift3"),
          step=STEP_BASE, steps=(4, 10)),
    Accel("more steps", "UniPC 50 instead of 10 (the card's default)",
          (QUALITY_FILE, "vdrt-tiny-wan-teacher unipc-50 g4 shift3"), step=STEP_BASE, steps=(50, 10)),
    Accel("ONNX engine", "fp32, onnxruntime CPU", (QUALITY_FILE, f"{W} engine onnx-fp32"), speed_note="not measured"),
    Accel("AOTI engine", "", None, speed_note="not measured"),
    Accel("torch.compile", "whole model", None, step="vdrt-torch.compile (auto ops)"),
    Accel("int4 weights (negative control)", "group 32, fake-quantised", (QUALITY_FILE, f"{W} int4 weights"),
          speed_note="not offered"),
)


def load_rows(rel: str) -> list[dict]:
    path = RESULTS / rel
    return json.loads(path.read_text()) if path.is_file() else []


def find(rows: list[dict], key: str, value: str) -> dict | None:
    hits = [r for r in rows if r.get(key) == value]
    return hits[-1] if hits else None


def speed_cells(a: Accel) -> tuple[str, str]:
    """(Wan-1.3B H200 ms and its source, speed-up against vdrt's default step)."""
    if a.step:
        rows = load_rows(STEP_FILE)
        base, row = find(rows, "impl", STEP_BASE), find(rows, "impl", a.step)
        if row and base and a.steps:
            n, ref = a.steps
            return (f"{n} x {row['ms']:.1f} ms = {n * row['ms'] / 1000:.2f} s of denoising, vs {ref * base['ms'] / 1000:.2f}"
                    f" s (from the step row, {STEP_FILE})", f"{ref / n:.2f}x")
        if row and base:
            return f"{row['ms']:.1f} ms a step ({STEP_FILE})", f"{base['ms'] / row['ms']:.2f}x"
    if a.attn:
        rows = [r for r in load_rows(ATTN_FILE) if r.get("case") == "wan13b"]
        base, row = find(rows, "impl", ATTN_BASE), find(rows, "impl", a.attn)
        if row and base and row.get("ms"):
            return (f"attention call only: {row['ms']:.2f} ms vs {base['ms']:.2f} cuDNN ({ATTN_FILE})",
                    f"{base['ms'] / row['ms']:.2f}x (attention)")
    return "not measured", a.speed_note if a.speed_note != "not measured" else "-"


def compare_row(a: Accel) -> dict | None:
    if a.quality is None:
        return None
    rel, cand = a.quality
    rows = [r for r in load_rows(rel) if str(r.get("bench", "")).endswith("-compare")]
    return find(rows, "candidate", cand) or find(rows, "impl", cand)


def clips_of(report: dict) -> int:
    """The clip count of a compare row (older attention rows carry it only in the case: "test[0:N]")."""
    if "clips" in report:
        return report["clips"]
    return int(re.search(r"test\[0:(\d+)\]", report["case"]).group(1))


def diff_cell(report: dict, metric: str, digits: int) -> str:
    m = next((m for m in report["metrics"] if m["metric"] == metric), None)
    if m is None:
        return "-"
    ci = "" if m["low"] is None else f" [{m['low']:+.{digits}f}, {m['high']:+.{digits}f}]"
    return f"{m['diff']:+.{digits}f}{ci}"


def fidelity_cell(report: dict) -> str:
    def one(task):
        f = report["fidelity"].get(task)
        if f is None:
            return "-"
        psnr = "inf" if f["psnr"] in ("inf", math.inf) else f"{f['psnr']:.1f}"
        return f"{psnr} / {f['ssim']:.3f}"
    return f"{one('t2v')}; {one('extend')}"


def quality_cells(a: Accel) -> list[str]:
    report = compare_row(a)
    if report is None:
        note = "reference" if a.quality is None and a.step == STEP_BASE else "not measured"
        return [note] + ["-"] * 6
    verdict = "**worse**: " + ", ".join(report["worse"]) if report["worse"] else "same or better"
    skipped = f"{100 * report['skipped']:.0f}%" if report.get("skipped") is not None else "-"
    return [f"{verdict} ({clips_of(report)} clips)", skipped, fidelity_cell(report),
            diff_cell(report, "t2v.adherent", 3), diff_cell(report, "t2v.coherent", 3),
            diff_cell(report, "extend.psnr", 2), diff_cell(report, "extend.centroid_error", 2)]


HEAD = ("acceleration", "setting", "Wan-1.3B on the H200", "speed-up", "oracle verdict (CPU)", "skipped steps",
        "fidelity PSNR dB / SSIM (t2v; extend)", "adherent diff [95% CI]", "coherent diff", "extend PSNR diff dB",
        "extend centroid diff px")


def table() -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + " --- |" * len(HEAD)]
    for a in ACCELS:
        cells = [a.name, a.setting or "-", *speed_cells(a), *quality_cells(a)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spliced(doc: str, body: str) -> str:
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} lacks the markers {START} / {END}")
    head, rest = doc.split(START, 1)
    return head + START + "\n" + body + "\n" + END + rest.split(END, 1)[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help=f"replace the table in {DOC.name}")
    p.add_argument("--check", action="store_true", help=f"exit 1 when {DOC.name} disagrees with the rows")
    args = p.parse_args(argv)
    body = table()
    if args.check:
        ok = spliced(DOC.read_text(), body) == DOC.read_text()
        print("docs/quality.md agrees with the rows" if ok else "docs/quality.md is stale: run --write")
        return 0 if ok else 1
    if args.write:
        DOC.write_text(spliced(DOC.read_text(), body))
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
