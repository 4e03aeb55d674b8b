"""`vdrt verify DIR`: check an engine directory without loading it; prints VALID, or what is wrong and exits 2.

The checks are those `vdrt.load_engine` runs before deserializing anything (vdrt.engines.integrity):
the manifest's schema, format version and fingerprint; its ed25519 signature (with
--trusted-key / $VDRT_TRUSTED_KEYS: signed by one of those keys); exactly the listed files,
each with its size and sha256; for AOTI, the manifest against what the package was compiled
for. Verdicts: VALID, INVALID (not a readable manifest of a known format), TAMPERED (changed
after the build), UNTRUSTED (not signed by a trusted key).
"""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("verify", help="check an engine directory's integrity (VALID, or what is wrong: exit 2)",
                       description=__doc__)
    p.add_argument("engine", help="engine directory")
    p.add_argument("--trusted-key", action="append", default=None, metavar="PUBKEY",
                   help="ed25519 public key file (PEM/OpenSSH) the engine must be signed by (repeatable; "
                        "default: $VDRT_TRUSTED_KEYS)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_verify)


def run_verify(args) -> int:
    from vdrt.engines import integrity
    from vdrt.errors import EngineError

    path = Path(args.engine)
    if not (path / "manifest.json").is_file():
        raise EngineError(f"{path} is not an engine directory (no manifest.json); build one with `vdrt build`")
    v = integrity.verify(path, args.trusted_key)
    if args.json:
        print(json.dumps({"path": str(path), "status": v.status, "problems": v.problems, "artifacts": v.artifacts,
                          "signature": v.signature}, indent=2))
    else:
        print(_text(v))
    return 0 if v.ok else 2


def _text(v) -> str:
    if not v.ok:
        return "\n".join([f"{v.status}: {v.path}", *(f"  - {p}" for p in v.problems)])
    m = v.manifest
    size = sum(r["bytes"] for r in m["artifacts"].values())
    return (f"VALID: {v.path} ({m['backend']} engine, {m['precision']}, {len(m['artifacts'])} artifact(s), "
            f"{size / 1e6:.2f} MB, all sha256 verified; fingerprint {m['fingerprint'][:23]}…; "
            f"signature: {v.signature})")
