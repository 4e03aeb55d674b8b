"""The README's latency-per-GPU table, generated from the step rows in benchmarks/results/<gpu>/.

    python benchmarks/readme_latency.py            # rewrite the table between the README's markers
    python benchmarks/readme_latency.py --check    # exit 1 if the README's table is not what the rows give

Rows: the `wan_step*.json` files under benchmarks/results/<gpu>/ (lists of dicts with case, impl, ms, device,
commit, date; rows with an error are left out), each GPU's latest date only. One table per GPU and case, fastest first, each with its
ratio to diffusers' regional compile (the peer to beat) when the same file measured it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- latency:begin (benchmarks/readme_latency.py) -->", "<!-- latency:end -->"
PEER = "diffusers compile_repeated_blocks (regional)"
LOSSY = ("8-bit", "int8", "fp8", "sparse")  # options whose quality cost docs/quality.md gives


def load_rows(results: Path) -> list[dict]:
    """Every step row of each GPU's latest date (older dates are other commits: superseded, not shown)."""
    rows = []
    for gpu in sorted(p for p in results.iterdir() if p.is_dir()):
        mine = [r for path in sorted(gpu.glob("wan_step*.json")) for r in _rows(path)]
        latest = max((r["date"] for r in mine), default=None)
        rows += [r for r in mine if r["date"] == latest]
    return rows


def _rows(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    data = data["rows"] if isinstance(data, dict) else data  # some files wrap their rows with a note
    return [{**r, "source": f"{path.parent.name}/{path.name}"} for r in data if r.get("ms") and not r.get("error")]


def _table(case: str, rows: list[dict]) -> list[str]:
    peer = next((r["ms"] for r in rows if r["impl"] == PEER), None)
    r0 = rows[0]
    out = [f"**{case}** on {r0['device']} (torch {r0.get('torch', '?')}, {r0['date']}, commit {r0['commit']}, "
           f"`benchmarks/results/{r0['source']}`)", "", "| denoiser step | ms | vs regional compile | exact? |",
           "| --- | ---: | ---: | --- |"]
    for r in sorted(rows, key=lambda r: r["ms"]):
        ratio = f"{peer / r['ms']:.2f}x" if peer else "not measured"
        lossy = any(w in r["impl"] for w in LOSSY)
        out.append(f"| {r['impl']} | {r['ms']:.1f} | {ratio} | {'lossy' if lossy else 'yes'} |")
    return out + [""]


def markdown(rows: list[dict]) -> str:
    cases: dict[tuple, list[dict]] = {}
    for r in rows:
        cases.setdefault((r["source"], r["case"]), []).append(r)
    lines = []
    newest_first = sorted(cases.items(), key=lambda kv: (kv[1][0]["date"], kv[0]), reverse=True)
    for (_, case), group in newest_first:
        lines += _table(case, group)
    return "\n".join(lines).rstrip() + "\n"


def splice(readme: str, table: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {BEGIN} ... {END}")
    head, rest = readme.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table}{END}{rest.split(END, 1)[1]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the README's table is stale")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    text = a.readme.read_text()
    new = splice(text, markdown(load_rows(a.results)))
    if a.check:
        if new != text:
            print(f"{a.readme}: the latency table is stale; run python benchmarks/readme_latency.py", file=sys.stderr)
            return 1
        return 0
    a.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
