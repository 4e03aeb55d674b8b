"""ed25519-signed manifests (vdrt.export.manifest.sign_engine) and loading with trusted keys: a build pipeline signs,
an app loads only what a trusted key signed; a signed manifest edited afterwards (even with its fingerprint
recomputed) is refused."""
from __future__ import annotations

import json

import pytest
from integrity_helpers import edit_manifest, write_engine

from vdrt.cli import main
from vdrt.engines import integrity, loading
from vdrt.errors import ConfigError, EngineError
from vdrt.export.manifest import save, sign_engine

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
ser = pytest.importorskip("cryptography.hazmat.primitives.serialization")


def _keypair(tmp_path, name):
    key = ed.Ed25519PrivateKey.generate()
    priv, pub = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub"
    priv.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub, key


@pytest.fixture
def signed(tmp_path):
    priv, pub, key = _keypair(tmp_path, "builder")
    d = write_engine(tmp_path / "e")
    m = sign_engine(d, priv)
    return d, pub, key, m


def test_signed_engine_loads_with_its_key_in_every_form(signed, tmp_path):
    d, pub, key, m = signed
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    assert m["signature"]["key_id"] == integrity.key_id(raw) and m["signature"]["public_key"] == raw.hex()
    ssh = tmp_path / "builder.ssh.pub"
    ssh.write_bytes(key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH))
    for trusted in ([pub], str(pub), [ssh], [raw], [raw.hex()], [key.public_key()]):
        loading.load(d, trusted_keys=trusted)
    v = integrity.verify(d, [pub])
    assert v.ok and v.signature.endswith(": verified, trusted")
    assert integrity.verify(d).signature.endswith("(no trusted keys given: who signed is not checked)")


def test_other_key_and_unsigned_engines_are_refused(signed, tmp_path):
    d, pub, _, _ = signed
    _, other, _ = _keypair(tmp_path, "stranger")
    with pytest.raises(EngineError, match=r"is signed by key [0-9a-f]{16}, which is not among the trusted keys"):
        loading.load(d, trusted_keys=[other])
    unsigned = write_engine(tmp_path / "u")
    with pytest.raises(EngineError, match=r"is not signed, and only engines signed by a trusted key"):
        loading.load(unsigned, trusted_keys=[pub])
    assert integrity.verify(unsigned, [pub]).status == "UNTRUSTED"


def test_edit_after_signing_is_tampered_even_with_a_fresh_fingerprint(signed, capsys):
    d, pub, _, _ = signed
    edit_manifest(d, lambda m: m["profiles"]["frames"].update(max=9))  # refingerprinted, signature kept
    with pytest.raises(EngineError, match=r"signature does not match its content"):
        loading.load(d)  # no trusted keys: a present signature is still checked
    assert main(["verify", str(d), "--trusted-key", str(pub)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED") and "signature does not match" in out


def test_resaving_drops_the_signature_and_resigning_replaces_it(signed, tmp_path):
    d, pub, _, _ = signed
    m = json.loads((d / "manifest.json").read_text())
    assert "signature" not in save(d, m)
    with pytest.raises(EngineError, match="is not signed"):
        loading.load(d, trusted_keys=[pub])
    priv2, pub2, _ = _keypair(tmp_path, "second")
    sign_engine(d, priv2)
    loading.load(d, trusted_keys=[pub, pub2])


def test_trusted_keys_from_the_environment(signed, tmp_path, monkeypatch):
    d, pub, _, _ = signed
    _, other, _ = _keypair(tmp_path, "stranger")
    monkeypatch.setenv("VDRT_TRUSTED_KEYS", f"{other}:{pub}")
    loading.load(d)
    monkeypatch.setenv("VDRT_TRUSTED_KEYS", str(other))
    with pytest.raises(EngineError, match="not among the trusted keys"):
        loading.load(d)
    assert integrity.verify(d, trusted_keys=()).ok  # an explicit empty list overrides the environment


@pytest.mark.parametrize("content, match", [(b"", "not a PEM or OpenSSH public key"),
                                            (None, "unreadable")])
def test_bad_trusted_key_files_are_one_clear_error(tmp_path, content, match):
    f = tmp_path / "k.pub"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        integrity.trusted_key_bytes([f])


def test_signing_refuses_a_tampered_engine_and_bad_keys(tmp_path):
    priv, _, _ = _keypair(tmp_path, "k")
    d = write_engine(tmp_path / "e")
    (d / "stray").write_text("x")
    with pytest.raises(EngineError, match="stray"):
        sign_engine(d, priv)
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        sign_engine(write_engine(tmp_path / "f"), tmp_path / "bad.pem")
