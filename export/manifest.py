"""Writing `manifest.json`, fingerprinted, and signing it (reading and validation live in the runtime:
vdrt.engines.manifest, vdrt.engines.integrity).

Signing (optional, for build pipelines that ship engines to apps): `sign_engine(dir, key)` adds an
ed25519 signature over the manifest (so over every artifact's sha256) with a PEM private key, e.g.
`openssl genpkey -algorithm ed25519 -out key.pem`; a build signs the engine it writes to `out`
when $VDRT_SIGNING_KEY names such a key file. Apps load with `trusted_keys=` / $VDRT_TRUSTED_KEYS.
Needs the `cryptography` package (`pip install 'vdrt[sign]'`).
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
from pathlib import Path

import torch

import vdrt
from vdrt import fsutil
from vdrt.engines import manifest as mf
from vdrt.engines.manifest import FORMAT_VERSION
from vdrt.errors import ConfigError, dist_version
from vdrt.fsutil import atomic_path, sha256_file

log = logging.getLogger(__name__)

TOOLS = {"torch": "torch", "triton": "triton", "onnx": "onnx", "onnxscript": "onnxscript",
         "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "diffusers": "diffusers"}


def toolchain() -> dict:
    """Versions that decide what a build produces (read from package metadata: nothing heavy is imported)."""
    tools = {name: dist_version(dist) for name, dist in TOOLS.items()}
    if tools["onnxruntime"] is None:
        tools["onnxruntime"] = dist_version("onnxruntime-gpu")
    tools["torch"] = torch.__version__
    return {"python": platform.python_version(), "cuda": torch.version.cuda, **tools}


def device_info(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"type": "cpu", "name": "cpu", "sm": "cpu"}
    major, minor = torch.cuda.get_device_capability(device)
    return {"type": "cuda", "name": torch.cuda.get_device_name(device), "sm": f"{major}.{minor}"}


def artifact_records(workdir: Path, names: list[str]) -> dict:
    """sha256 and size of each artifact; files over two chunks also get per-chunk hashes (fast parallel check)."""
    return {n: _record(workdir / n) for n in names}


def _record(f: Path) -> dict:
    rec = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    chunk = fsutil.CHUNK_BYTES
    if rec["bytes"] > 2 * chunk:
        rec.update(chunk_bytes=chunk, chunk_sha256=fsutil.sha256_chunks(f, chunk))
    return rec


def write(workdir: Path, *, backend: str, target, precision: str, profile, artifacts: list[str],
          device: torch.device, build: dict) -> dict:
    """Hash the artifacts and write `workdir/manifest.json`; returns the manifest."""
    m = {"format_version": FORMAT_VERSION, "vdrt_version": vdrt.__version__, "backend": backend,
         "model_config": target.model_config, "layout": target.layout, "precision": precision,
         "inputs": target.inputs, "outputs": target.outputs, "profiles": profile.to_dict(),
         "artifacts": artifact_records(workdir, artifacts), "toolchain": toolchain(), "device": device_info(device),
         "build": {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **build}}
    return save(workdir, m)


def save(engine_dir: Path, m: dict) -> dict:
    """Fingerprint `m` (any signature is dropped: it would no longer match) and write it atomically."""
    m = json.loads(json.dumps({k: v for k, v in m.items() if k not in ("fingerprint", "signature")}))  # as read back
    m["fingerprint"] = mf.fingerprint(m)
    _write(Path(engine_dir), m)
    return m


def _write(engine_dir: Path, m: dict) -> None:
    with atomic_path(engine_dir / "manifest.json") as tmp:
        tmp.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- ed25519 signatures


def sign_engine(engine_dir, private_key) -> dict:
    """Sign the (verified) engine directory `engine_dir` with `private_key` (a PEM file path or an Ed25519PrivateKey);
    returns the signed manifest. Re-signing replaces an older signature."""
    from cryptography.hazmat.primitives import serialization as ser

    from vdrt.engines import integrity

    key = load_private_key(private_key)
    m = {k: v for k, v in integrity.check(engine_dir, trusted_keys=()).items() if k != "signature"}
    pub = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    m["signature"] = {"alg": "ed25519", "key_id": integrity.key_id(pub), "public_key": pub.hex(),
                      "value": key.sign(mf.signed_bytes(m)).hex()}
    _write(Path(engine_dir), m)
    log.info("signed %s with ed25519 key %s", engine_dir, m["signature"]["key_id"])
    return m


def load_private_key(key):
    """An Ed25519PrivateKey from a key object or an unencrypted PEM (PKCS#8) / OpenSSH private key file."""
    from vdrt.errors import require

    require("cryptography", "sign")
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not isinstance(key, Ed25519PrivateKey):
        key = _read_private_key(Path(key), ser)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the signing key is not an ed25519 private key; make one with "
                          "`openssl genpkey -algorithm ed25519 -out key.pem`")
    return key


def _read_private_key(path: Path, ser):
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"signing key {path} is unreadable ({e.strerror}); $VDRT_SIGNING_KEY names a PEM "
                          "ed25519 private key file") from e
    try:
        if data.startswith(b"-----BEGIN OPENSSH"):
            return ser.load_ssh_private_key(data, password=None)
        return ser.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"signing key {path} is not an unencrypted PEM or OpenSSH private key ({e})") from e


def signing_key_from_env():
    """The key named by $VDRT_SIGNING_KEY (checked at once, before a build starts), or None."""
    path = os.environ.get("VDRT_SIGNING_KEY")
    return load_private_key(path) if path else None
