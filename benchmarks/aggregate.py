"""Aggregate benchmark rows into benchmarks/results/<gpu>/ with a bar chart (PNG) per model.

    vdrt bench wan2.1-t2v-1.3b --peers diffusers,compile --json rows.json
    python benchmarks/aggregate.py rows.json [more.json ...] [--results benchmarks/results]

Input files hold a list of rows or {"rows": [...]} (what `vdrt bench --json` and the scripts in
benchmarks/ write). Each row goes to `<results>/<gpu>/rows.json` (gpu from its `device`: "NVIDIA
H100 80GB HBM3" -> h100, "cpu" -> cpu), merged with the rows already there (a row with the same
bench, model, case, impl, commit and date replaces the old one). Then every model of that GPU
(`model`, else the row's `bench`) gets `<results>/<gpu>/<model>.png`: for each case, one bar per
impl with its median ms, from the newest row of each (case, impl). Rows without `ms` (failed
variants) are kept in the JSON and left out of the plots.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

log = logging.getLogger("aggregate")

KEY = ("bench", "model", "case", "impl", "commit", "date")


def read_rows(path: Path) -> list[dict]:
    data = json.loads(Path(path).read_text())
    rows = data["rows"] if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "impl" in r for r in rows):
        raise SystemExit(f"{path}: not a list of benchmark rows (each with bench, case, impl, ms)")
    return rows


def gpu_slug(device: str | None) -> str:
    """'NVIDIA H100 80GB HBM3 (sm_90)' -> 'h100'; 'cpu' -> 'cpu'; otherwise a file-safe lowercase name."""
    device = device or "unknown"
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", device)
    if m:
        return m.group(1).lower()
    name = re.sub(r"^nvidia\s+", "", device.lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "unknown"


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    merged = {tuple(r.get(k) for k in KEY): r for r in old}
    merged.update({tuple(r.get(k) for k in KEY): r for r in new})
    return list(merged.values())


def latest(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """{case: {impl: newest row with a time}} (newest by date, then file order)."""
    out: dict[str, dict[str, dict]] = {}
    for r in sorted((r for r in rows if r.get("ms")), key=lambda r: str(r.get("date", ""))):
        out.setdefault(r["case"], {})[r["impl"]] = r
    return out


def plot(model: str, rows: list[dict], path: Path) -> None:
    """Horizontal bars of median ms per impl, one group per case, written as PNG (Pillow only)."""
    from PIL import Image, ImageDraw, ImageFont

    cases = latest(rows)
    font = ImageFont.load_default()
    label_w, bar_w, line = 330, 420, 18
    height = 30 + sum(line * (len(impls) + 1) + 10 for impls in cases.values())
    img = Image.new("RGB", (label_w + bar_w + 110, max(height, 60)), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), f"{model}: median ms per call (lower is better)", fill="black", font=font)
    y = 30
    for case, impls in cases.items():
        d.text((10, y), case[:80], fill="black", font=font)
        y += line
        top = max(r["ms"] for r in impls.values())
        for impl, r in sorted(impls.items(), key=lambda kv: kv[1]["ms"]):
            w = max(1, int(bar_w * r["ms"] / top))
            ours = impl.startswith("vdrt")
            d.text((20, y + 2), impl[:52], fill="black", font=font)
            d.rectangle([label_w, y + 2, label_w + w, y + line - 3], fill="#1f77b4" if ours else "#aaaaaa")
            d.text((label_w + w + 6, y + 2), f"{r['ms']:.4g} ms", fill="black", font=font)
            y += line
        y += 10
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def aggregate(files: list[Path], results: Path) -> list[Path]:
    """Merge the files' rows into results/<gpu>/rows.json and redraw each model's plot; returns the PNGs."""
    by_gpu: dict[str, list[dict]] = {}
    for f in files:
        for r in read_rows(f):
            by_gpu.setdefault(gpu_slug(r.get("device")), []).append(r)
    written = []
    for gpu, rows in by_gpu.items():
        store = results / gpu / "rows.json"
        rows = merge(read_rows(store) if store.is_file() else [], rows)
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        tmp.replace(store)
        for model in sorted({r.get("model") or r["bench"] for r in rows}):
            mine = [r for r in rows if (r.get("model") or r["bench"]) == model]
            if not any(r.get("ms") for r in mine):
                continue  # nothing timed (e.g. quality rows)
            path = results / gpu / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}.png"
            plot(model, mine, path)
            written.append(path)
        log.info("%s: %d rows in %s", gpu, len(rows), store)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="JSON files of benchmark rows")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    for f in args.files:
        if not f.is_file():
            raise SystemExit(f"{f}: no such file")
    for p in aggregate(args.files, args.results):
        print(p)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname).1s %(name)s: %(message)s")
    raise SystemExit(main())
