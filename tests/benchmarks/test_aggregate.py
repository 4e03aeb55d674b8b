"""benchmarks/aggregate.py: rows from `vdrt bench --json` and the benchmark scripts -> results/<gpu>/ + PNGs."""
import json
from pathlib import Path

import pytest
from script_helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "aggregate.py"


@pytest.fixture(scope="module")
def agg():
    return load_script("aggregate.py")


def _row(impl, ms, device="NVIDIA H100 80GB HBM3 (sm_90)", model="wan-tiny", case="1x5x32x32 bf16", date="2026-11-24",
         commit="abc"):
    return {"bench": "step", "model": model, "case": case, "impl": impl, "ms": ms, "device": device, "date": date,
            "commit": commit}


def test_rows_are_merged_per_gpu_and_each_model_gets_a_plot(agg, tmp_path):
    from PIL import Image

    a = tmp_path / "a.json"
    a.write_text(json.dumps([_row("vdrt-torch", 2.0), _row("diffusers-eager", 3.0), _row("vdrt-torch", 9.0, "cpu")]))
    b = tmp_path / "b.json"  # {"rows": [...]} as the benchmark scripts write; a newer run of the same impl
    b.write_text(json.dumps({"note": "x", "rows": [_row("vdrt-torch", 1.5, date="2026-11-25", commit="def"),
                                                   _row("vdrt-broken", None)]}))
    written = agg.aggregate([a, b], tmp_path / "results")
    assert sorted(p.relative_to(tmp_path / "results").as_posix() for p in written) == ["cpu/wan-tiny.png",
                                                                                        "h100/wan-tiny.png"]
    h100 = json.loads((tmp_path / "results/h100/rows.json").read_text())
    assert len(h100) == 4  # both vdrt-torch runs kept (different commit/date), the failed row kept too
    newest = agg.latest(h100)["1x5x32x32 bf16"]
    assert newest["vdrt-torch"]["ms"] == 1.5 and "vdrt-broken" not in newest
    img = Image.open(tmp_path / "results/h100/wan-tiny.png")
    assert img.format == "PNG" and img.width > 400 and len(set(img.convert("L").getdata())) > 2
    agg.aggregate([a], tmp_path / "results")  # the same rows again replace, never duplicate
    assert len(json.loads((tmp_path / "results/h100/rows.json").read_text())) == 4


@pytest.mark.parametrize("device, slug", [("NVIDIA H100 80GB HBM3 (sm_90)", "h100"), ("NVIDIA H200", "h200"),
                                          ("cpu", "cpu"), ("NVIDIA GeForce RTX 4090", "geforce-rtx-4090"),
                                          (None, "unknown")])
def test_gpu_slug(agg, device, slug):
    assert agg.gpu_slug(device) == slug


def test_a_file_that_is_not_rows_is_refused(agg, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"ms": 1}]}))
    with pytest.raises(SystemExit, match="not a list of benchmark rows"):
        agg.aggregate([bad], tmp_path / "results")
