"""Engine integrity on the GPU: CUDA AOTI packages verify (no false refusal), their compiled facts parse, tampering
is refused, the checks' cost at load. One run does all of it and writes JSON rows.

    python3 benchmarks/device/integrity.py --out $OUT/integrity.json                 # GPU: ~3 min (3 AOTI builds)
    python3 benchmarks/device/integrity.py --models factorized-tiny --modes external --out /tmp/i.json  # CPU check

Per engine (model x aoti_weights mode, bf16 on CUDA, fp32 on CPU): build seconds; `integrity.verify` status and
problems (must be VALID, []); the header and number of input bounds parsed from the package (must be found);
the engine against eager (relative error); two consistent tamperings (frames widened and re-fingerprinted; external
weights dropped from the list) that must be refused; the time of the full check vs the hashes alone (median of 5).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {"wan-tiny": {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (4, 8, 16), "width": (4, 8, 16),
                       "text_len": (1, 16, 32)},
          "factorized-tiny": {"batch": (1, 1, 2), "frames": (1, 3, 5), "height": (8, 16, 32), "width": (8, 16, 32),
                              "text_len": (1, 16, 32)}}


def _median_ms(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _tampered(src: Path, work: Path, edit) -> str:
    from vdrt.engines import integrity
    from vdrt.engines import manifest as mf

    d = work / "tampered"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    m = json.loads((d / "manifest.json").read_text())
    edit(m, d)
    m["fingerprint"] = mf.fingerprint(m)
    (d / "manifest.json").write_text(json.dumps(m))
    v = integrity.verify(d)
    return v.status + ": " + (v.problems[0][:160] if v.problems else "")


def _drop_weights(m, d):
    m["artifacts"].pop("weights.safetensors", None)
    (d / "weights.safetensors").unlink(missing_ok=True)


def row(name: str, mode: str, dev: torch.device, work: Path) -> dict:
    import vdrt
    from vdrt.engines import integrity
    from vdrt.engines import manifest as mf

    precision = "bf16" if dev.type == "cuda" else "fp32"
    den = vdrt.load_denoiser(name, device=dev)
    out = work / f"{name}-{mode}"
    t0 = time.perf_counter()
    eng = vdrt.export.build(den, "aoti", out, precision=precision, shapes=SHAPES[name], cache=False,
                            aoti_weights=mode)
    build_s = time.perf_counter() - t0
    v = integrity.verify(out)
    bounds, header = integrity.compiled_facts(out / "model.pt2")
    g = torch.Generator().manual_seed(0)
    cfg = den.config
    x = (torch.randn(1, cfg.in_channels, 3, SHAPES[name]["height"][1], SHAPES[name]["width"][1], generator=g),
         torch.rand(1, generator=g) * 1000, torch.randn(1, 16, cfg.text_dim, generator=g))
    x = tuple(t.to(dev) for t in x)
    with torch.no_grad():
        want, got = den(*x), eng(*x)  # eager fp32 vs the engine (bf16 on CUDA: ~1e-2 expected)
    err = ((got.double() - want.double()).norm() / want.double().norm()).item()
    return {"model": name, "weights": mode, "device": str(dev), "gpu": torch.cuda.get_device_name(dev)
            if dev.type == "cuda" else "cpu", "precision": precision, "build_s": round(build_s, 1),
            "status": v.status, "problems": v.problems, "header": header, "bounds_parsed": len(bounds),
            "rel_err_vs_eager": err,
            "widened_frames": _tampered(out, work, lambda m, d: m["profiles"]["frames"].update(max=9)),
            "weights_dropped": _tampered(out, work, _drop_weights) if mode == "external" else None,
            "check_ms": _median_ms(lambda: integrity.check(out)),
            "hashes_only_ms": _median_ms(lambda: mf.verify_artifacts(out, mf.read(out)))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="factorized-tiny,wan-tiny")
    p.add_argument("--modes", default="external,in_so")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        from vdrt.engines.aoti import ensure_preload

        ensure_preload(force=True)  # the lent image's libstdc++ quirk (docs/engine-format.md)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            for mode in args.modes.split(","):
                if name == "wan-tiny" and mode == "in_so" and len(rows) >= 2:
                    continue  # one in_so package is enough; keeps the GPU run short
                rows.append(row(name, mode, dev, Path(work)))
                r = rows[-1]
                print(f"{r['model']:<16} {r['weights']:<8} {r['status']:<8} bounds {r['bounds_parsed']:>2} "
                      f"err {r['rel_err_vs_eager']:.2e} widened -> {r['widened_frames'][:9]} "
                      f"check {r['check_ms']:.1f} ms (hashes {r['hashes_only_ms']:.1f} ms) build {r['build_s']} s",
                      flush=True)
                Path(args.out).write_text(json.dumps(rows, indent=1))
    ok = all(r["status"] == "VALID" and r["bounds_parsed"] and r["header"] and r["widened_frames"].startswith(
        "TAMPERED") and (r["weights_dropped"] is None or r["weights_dropped"].startswith("TAMPERED")) for r in rows)
    print("ALL OK" if ok else "SOMETHING FAILED: see the rows")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
