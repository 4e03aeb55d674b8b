"""`vdrt inspect SOURCE`: describe an engine directory (verified), a checkpoint dir, an embedded model or a preset.

For an engine, in the manner of `polygraphy inspect model`: its inputs and outputs, the shape
profile (latent units), precision, device and toolchain, each artifact's size and sha256, and the
verdict of every integrity check (vdrt.engines.integrity: schema, fingerprint, signature, the
listed files and their hashes, the compiled package against the manifest). Nothing in the
engine is deserialized. A tampered or invalid engine is printed with what is wrong, and the
command exits 2.
"""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("inspect", help="describe an engine dir (verified), checkpoint dir, embedded model or preset",
                       description=__doc__)
    p.add_argument("source", help="engine directory, checkpoint directory, embedded model (vdrt-tiny) or preset")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--trusted-key", action="append", default=None, metavar="PUBKEY",
                   help="ed25519 public key file (PEM/OpenSSH) the engine must be signed by (repeatable; "
                        "default: $VDRT_TRUSTED_KEYS)")
    p.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    path = Path(args.source)
    if (path / "manifest.json").is_file():
        return _inspect_engine(path, args)
    info = _model_info(args.source)
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else _model_text(info))
    return 0


def _inspect_engine(path: Path, args) -> int:
    from vdrt.engines import integrity

    v = integrity.verify(path, args.trusted_key)
    if args.json:
        raw = v.raw if isinstance(v.raw, dict) else {}
        print(json.dumps({**raw, "verdict": verdict_dict(v)}, indent=2, sort_keys=True))
    else:
        print(engine_text(v))
    return 0 if v.ok else 2


def verdict_dict(v) -> dict:
    return {"path": str(v.path), "status": v.status, "problems": v.problems, "artifacts": v.artifacts,
            "signature": v.signature}


# ---------------------------------------------------------------- the engine report


def engine_text(v) -> str:
    m = v.raw if isinstance(v.raw, dict) else {}
    lines = [f"==== vdrt engine {v.path} ({m.get('backend', '?')}, {m.get('precision', '?')}, layout "
             f"{m.get('layout', '?')}) ====", f"Status: {v.status}"]
    if v.problems:
        lines += ["", f"---- {len(v.problems)} Problem(s) ----", *(f"- {p}" for p in v.problems)]
    if v.manifest is None and v.status == "INVALID":
        return _indent(lines)
    lines += _about(m) + _tensors(m, "inputs", "Input") + _tensors(m, "outputs", "Output")
    lines += _profile(m) + _artifacts(m, v) + _integrity(m, v)
    return _indent(lines)


def _indent(lines: list[str]) -> str:
    return "\n".join(ln if ln.startswith("====") or not ln else "    " + ln for ln in lines)


def _about(m: dict) -> list[str]:
    cfg = m.get("model_config", {})
    shown = " ".join(f"{k}={v}" for k, v in cfg.items() if k != "family" and isinstance(v, (int, float, str, list))
                     and len(str(v)) < 24)
    tools = ", ".join(f"{k} {v}" for k, v in m.get("toolchain", {}).items() if v)
    d, b = m.get("device", {}), m.get("build", {})
    secs = b.get("seconds", {})
    took = f"; {secs['total']:.1f} s" if isinstance(secs.get("total"), (int, float)) else ""
    return ["", f"Model: {cfg.get('family', '?')} ({shown})",
            f"Built: {b.get('time', '?')} by vdrt {m.get('vdrt_version', '?')} on {d.get('name', '?')} "
            f"(sm {d.get('sm', '?')}){took}", f"Toolchain: {tools}"]


def _tensors(m: dict, key: str, title: str) -> list[str]:
    specs = m.get(key, [])
    width = max((len(s["name"]) for s in specs), default=0)
    return ["", f"---- {len(specs)} {title}(s) ----"] + [
        f"{s['name']:<{width}} [dtype={s['dtype']}, shape=({', '.join(map(str, s['shape']))})]" for s in specs]


def _profile(m: dict) -> list[str]:
    profs = m.get("profiles", {})
    rows = [f"{'dim':<10} {'min':>6} {'opt':>6} {'max':>6} {'multiple':>9}"]
    rows += [f"{d:<10} {p['min']:>6} {p['opt']:>6} {p['max']:>6} {p['multiple']:>9}" for d, p in profs.items()]
    shapes = []
    for s in m.get("inputs", []):
        per = {k: "(" + ", ".join(str(profs[d][k]) if isinstance(d, str) else str(d) for d in s["shape"]) + ")"
               for k in ("min", "opt", "max")}
        shapes.append(f"{s['name']}: min={per['min']}, opt={per['opt']}, max={per['max']}")
    return ["", "---- Profile (latent units) ----", *rows, *shapes]


def _artifacts(m: dict, v) -> list[str]:
    arts = m.get("artifacts", {})
    total = sum(r["bytes"] for r in arts.values())
    width = max((len(n) for n in arts), default=0)
    rows = [f"{n:<{width}} {_mb(r['bytes']):>10}  sha256 {r['sha256'][:16]}…  {v.artifacts.get(n, 'not checked')}"
            for n, r in arts.items()]
    return ["", f"---- {len(arts)} Artifact(s), {_mb(total)} ----", *rows]


def _integrity(m: dict, v) -> list[str]:
    fp = "does NOT match" if any("fingerprint" in p for p in v.problems) else "verified"
    return ["", "---- Integrity ----", f"Fingerprint: {str(m.get('fingerprint', '?'))[:23]}… {fp}",
            f"Signature:   {v.signature}", f"Verdict:     {v.status}"]


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------- checkpoints, embedded models, presets


def _model_info(source) -> dict:
    import torch

    from vdrt import embedded, models
    from vdrt.loader import load_denoiser, load_directory

    path = Path(source)
    if path.is_dir():
        config, kind = load_directory(path).config, "checkpoint"
    elif str(source) in embedded.names():
        config, kind = load_denoiser(str(source)).config, "embedded model (weights sha256 verified)"
    else:
        config, kind = models.config_from_name(source), "preset (random weights)"
    with torch.device("meta"):
        params = sum(p.numel() for p in models.build_model(config).parameters())
    return {"source": str(source), "kind": kind, "params": params, "config": config.to_dict()}


def _model_text(info: dict) -> str:
    cfg = "\n".join(f"    {k:<18} {v}" for k, v in info["config"].items())
    return (f"==== vdrt model {info['source']}: {info['kind']} ====\n    Params: {info['params']:,}\n\n"
            f"    ---- Config ----\n{cfg}")
