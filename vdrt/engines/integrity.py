"""THE check of an engine directory, run before anything in it is deserialized: load, inspect, verify, the cache.

In order (docs/engine-format.md, "Checks on load"):
1. `manifest.json` parses (unique keys, no NaN, at most 16 MiB), its format version is known and
   it fits the schema (vdrt.engines.schema): INVALID otherwise;
2. its fingerprint matches its content: a profile, backend, artifact list or config edited by hand
   is TAMPERED;
3. its ed25519 signature, if any, matches; with trusted keys (`trusted_keys=` or
   $VDRT_TRUSTED_KEYS) it must be signed by one of them: UNTRUSTED otherwise;
4. the directory holds exactly the listed artifacts (an unlisted file could be opened unchecked,
   e.g. `weights.safetensors` dropped from the list, or `model.pt2` after a backend edit), each a
   regular file with its recorded size and sha256: TAMPERED otherwise;
5. AOTI: the input checks Inductor compiled into `model.pt2` (read from the zip as text; no code
   is loaded) agree with the manifest's signature and profile bounds.

`verify(path)` returns a `Verdict` with every problem found (inspect, verify); `check(path)` raises
EngineError on the first one and returns the manifest (load, the build cache).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from vdrt.engines import manifest as mf
from vdrt.errors import ConfigError, EngineError, MissingDependency

log = logging.getLogger(__name__)

WORST = ("VALID", "UNTRUSTED", "TAMPERED", "INVALID")  # later wins


@dataclass
class Verdict:
    """What `verify` found: `status` VALID / UNTRUSTED / TAMPERED / INVALID and one line per problem."""

    path: Path
    status: str = "VALID"
    problems: list = field(default_factory=list)
    manifest: dict | None = None  # the validated manifest (None when it is INVALID)
    raw: dict | None = None  # the parsed JSON, even when invalid (for inspect)
    artifacts: dict = field(default_factory=dict)  # name -> "verified" or what is wrong
    signature: str = "none (unsigned)"

    @property
    def ok(self) -> bool:
        return self.status == "VALID"

    def add(self, status: str, problem: str) -> None:
        for prefix in (f"{self.path}: ", f"{self.path}/"):  # the errors of vdrt.engines.manifest name the path
            problem = problem.removeprefix(prefix)
        self.problems.append(problem)
        self.status = max(self.status, status, key=WORST.index)

    def error(self) -> EngineError:
        first = self.problems[0]
        return EngineError(f"{self.path}/{first}" if first.startswith("manifest.json") else f"{self.path}: {first}")


def check(path, trusted_keys=None) -> dict:
    """The validated manifest of engine dir `path`, after every check; EngineError naming the first problem."""
    v = verify(path, trusted_keys, first_only=True)
    if not v.ok:
        raise v.error()
    return v.manifest


def verify(path, trusted_keys=None, first_only: bool = False) -> Verdict:
    """Every check above on `path`; stops at the first problem with `first_only` (nothing is hashed after it)."""
    v = Verdict(Path(path))
    keys = trusted_key_bytes(trusted_keys)
    m = _manifest(v)
    if m is None:
        return v
    for status, problem in _findings(v, m, keys):
        v.add(status, problem)
        if first_only:
            return v
    v.manifest = m
    return v


def _manifest(v: Verdict) -> dict | None:
    try:
        v.raw = mf.read_json(v.path)
        mf.check_schema(v.raw, v.path)
    except EngineError as e:
        v.add("INVALID", str(e))
        return None
    return v.raw


def _findings(v: Verdict, m: dict, keys: list[bytes]):
    """(status, problem) for each problem, cheapest checks first."""
    try:
        mf.check_fingerprint(m, v.path)
    except EngineError as e:
        yield "TAMPERED", str(e)
    yield from _signature(v, m, keys)
    yield from (("TAMPERED", p) for p in listing_problems(v.path, m))
    for name, rec in m["artifacts"].items():
        problem = mf.artifact_problem(v.path, name, rec)
        v.artifacts[name] = "verified" if problem is None else problem.split(";")[0].removeprefix(f"artifact {name} ")
        if problem:
            yield "TAMPERED", problem
    if m["backend"] == "aoti" and all(s == "verified" for s in v.artifacts.values()):
        yield from (("TAMPERED", p) for p in aoti_problems(v.path / "model.pt2", m))


def listing_problems(path: Path, m: dict) -> list[str]:
    """Files in `path` that manifest.json does not list (besides itself)."""
    listed = set(m["artifacts"]) | {"manifest.json"}
    try:
        extra = sorted(e.name for e in os.scandir(path) if e.name not in listed)
    except OSError as e:
        return [f"the engine directory cannot be listed ({e.strerror}); check its permissions"]
    if not extra:
        return []
    return [f"{'file' if len(extra) == 1 else 'files'} {', '.join(extra)} in the engine directory "
            f"{'is' if len(extra) == 1 else 'are'} not listed in manifest.json's artifacts; an engine directory holds "
            "only the files its manifest lists and hashes (a backend could open an unlisted file unchecked). "
            "Remove it, or rebuild the engine"]


# ---------------------------------------------------------------- signatures


def _signature(v: Verdict, m: dict, keys: list[bytes]):
    sig = m.get("signature")
    ids = [key_id(k) for k in keys]
    if sig is None:
        if keys:
            yield "UNTRUSTED", f"is not signed, and only engines signed by a trusted key ({ids}) may load"
        return
    v.signature = f"ed25519 key {sig['key_id']}"
    ed = _ed25519(required=bool(keys))
    if ed is None:
        v.signature += " (not checked: cryptography is not installed)"
        return
    pub = bytes.fromhex(sig["public_key"])
    if key_id(pub) != sig["key_id"] or not _signature_matches(ed, pub, sig["value"], m):
        v.signature += ": DOES NOT MATCH"
        yield "TAMPERED", "manifest.json's signature does not match its content (changed after it was signed)"
        return
    if keys and pub not in keys:
        v.signature += ": valid, but NOT a trusted key"
        yield "UNTRUSTED", f"is signed by key {sig['key_id']}, which is not among the trusted keys {ids}"
        return
    v.signature += ": verified" + (", trusted" if keys else " (no trusted keys given: who signed is not checked)")


def _signature_matches(ed, pub: bytes, value: str, m: dict) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        ed.Ed25519PublicKey.from_public_bytes(pub).verify(bytes.fromhex(value), mf.signed_bytes(m))
    except (InvalidSignature, ValueError):
        return False
    return True


def _ed25519(required: bool):
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        if required:
            raise MissingDependency("cryptography", "sign") from None
        return None
    return ed25519


def key_id(raw: bytes) -> str:
    """The short id of a raw ed25519 public key: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw).hexdigest()[:16]


def trusted_key_bytes(keys=None) -> list[bytes]:
    """Raw 32-byte ed25519 public keys from `keys` (paths to PEM / OpenSSH public keys, 64 hex digits, raw bytes or
    key objects); `None` reads $VDRT_TRUSTED_KEYS (key files separated by os.pathsep)."""
    if keys is None:
        keys = [p for p in os.environ.get("VDRT_TRUSTED_KEYS", "").split(os.pathsep) if p]
    elif isinstance(keys, (str, bytes, os.PathLike)) or hasattr(keys, "public_bytes"):
        keys = [keys]
    return [_raw_key(k) for k in keys]


def _raw_key(k) -> bytes:
    if isinstance(k, bytes) and len(k) == 32:
        return k
    if isinstance(k, str) and re.fullmatch(r"[0-9a-fA-F]{64}", k):
        return bytes.fromhex(k)
    ed = _ed25519(required=True)
    from cryptography.hazmat.primitives import serialization as ser

    if not hasattr(k, "public_bytes"):
        k = _load_public_key(Path(k), ser)
    if not isinstance(k, ed.Ed25519PublicKey):
        raise ConfigError(f"trusted key {k!r} is not an ed25519 public key")
    return k.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)


def _load_public_key(path: Path, ser):
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"trusted key file {path} is unreadable ({e.strerror}); give a PEM or OpenSSH ed25519 "
                          "public key file") from e
    try:
        return ser.load_ssh_public_key(data) if data.startswith(b"ssh-") else ser.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"trusted key file {path} is not a PEM or OpenSSH public key ({e})") from e


# ---------------------------------------------------------------- AOTI: the bounds compiled into the package

_BOUND = re.compile(r'input_handles\[(\d+)\]: dim value is too (small|large) at (\d+), "\s*<<\s*'
                    r'"expected (?:it )?to be (?:>=|<=) (\d+),')
_STATIC = re.compile(r'input_handles\[(\d+)\]: unmatched dim value at (\d+), "\s*<<\s*"expected: (\d+),')
# AOTInductorModelBase(num_inputs, num_outputs, num_constants, device_str, cubin_dir, include_weights)
_HEADER = re.compile(r"AOTInductorModelBase\(\s*(\d+),\s*(\d+),\s*(\d+),\s*device_str,\s*[^,]+,\s*(true|false)\)")
MAX_WRAPPER_BYTES = 256 << 20


def compiled_facts(pt2: Path) -> tuple[dict, dict | None]:
    """What Inductor compiled into the package, read from its wrapper source (text in the zip; nothing is loaded):
    ({(input index, dim index): {"small"/"large"/"static": n}}, {"inputs", "outputs", "constants", "weights_inside"}
    or None). Empty when the package carries no source or the source reads otherwise (another torch)."""
    try:
        with zipfile.ZipFile(pt2) as z:
            srcs = [i for i in z.infolist() if i.filename.endswith("wrapper.cpp") and i.file_size < MAX_WRAPPER_BYTES]
            if len(srcs) != 1:
                return {}, None
            text = z.read(srcs[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile) as e:
        log.debug("no compiled facts from %s: %s", pt2, e)
        return {}, None
    bounds: dict = {}
    for i, kind, d, n in _BOUND.findall(text):
        bounds.setdefault((int(i), int(d)), {})[kind] = int(n)
    for i, d, n in _STATIC.findall(text):
        bounds.setdefault((int(i), int(d)), {})["static"] = int(n)
    h = _HEADER.search(text)
    header = None if h is None else {"inputs": int(h[1]), "outputs": int(h[2]), "constants": int(h[3]),
                                     "weights_inside": h[4] == "true"}
    return bounds, header


def aoti_problems(pt2: Path, m: dict) -> list[str]:
    """Where the manifest disagrees with what the package was compiled for (inputs, weights, shape bounds)."""
    bounds, header = compiled_facts(pt2)
    out = [] if header is None else _header_problems(header, m)
    for (i, d), b in sorted(bounds.items()):
        if i >= len(m["inputs"]) or d >= len(m["inputs"][i]["shape"]):
            out.append(f"model.pt2 was compiled for more inputs or dims than manifest.json lists (input {i}, dim {d})")
            continue
        out += _dim_problems(m, m["inputs"][i], m["inputs"][i]["shape"][d], b)
    return out


def _header_problems(h: dict, m: dict) -> list[str]:
    out = []
    if (h["inputs"], h["outputs"]) != (len(m["inputs"]), len(m["outputs"])):
        out.append(f"model.pt2 was compiled for {h['inputs']} inputs and {h['outputs']} outputs; manifest.json lists "
                   f"{len(m['inputs'])} and {len(m['outputs'])}")
    listed = "weights.safetensors" in m["artifacts"]
    if h["constants"] and not h["weights_inside"] and not listed:
        out.append("model.pt2 was compiled with its weights outside the package, but manifest.json lists no "
                   "weights.safetensors (removed from the list?); rebuild the engine")
    if h["weights_inside"] and listed:
        out.append("model.pt2 carries its weights inside, but manifest.json also lists weights.safetensors")
    return out


def _dim_problems(m: dict, spec: dict, dim, b: dict) -> list[str]:
    where = f"model.pt2 was compiled for input {spec['name']} with"
    if isinstance(dim, int):
        have = b.get("static", dim)
        return [] if have == dim else [f"{where} a dim of {have}, manifest.json says {dim}"]
    p = m["profiles"][dim]
    if "large" in b and p["max"] > b["large"]:
        return [f"{where} {dim} <= {b['large']}, but manifest.json's profile allows {dim} up to {p['max']} (the "
                "profile was widened after the build); rebuild the engine with the profile you need"]
    # a compiled lower bound of 2 (patches) is torch.export's 0/1 specialisation: one patch runs correctly
    if b.get("small", 0) > 2 * p["multiple"] and p["min"] < b["small"]:
        return [f"{where} {dim} >= {b['small']}, but manifest.json's profile allows {dim} down to {p['min']}; "
                "rebuild the engine with the profile you need"]
    return []
