"""The manifest schema (vdrt.engines.schema) and fingerprint: every malformed manifest is refused naming the key,
before any artifact is opened; JSON-level traps (duplicate keys, NaN, huge files) too."""
from __future__ import annotations

import copy
import json

import pytest
from integrity_helpers import edit_manifest, manifest_for, write_engine

from vdrt.engines import load_engine
from vdrt.engines import manifest as mf
from vdrt.errors import EngineError

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = write_engine(tmp_path_factory.mktemp("schema") / "e")
    return manifest_for(d)


def _refused(m: dict, match: str) -> str:
    if "fingerprint" in m:
        m["fingerprint"] = mf.fingerprint(m)
    with pytest.raises(EngineError, match=match) as e:
        mf.validate(m, "E")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_valid_manifest_passes(base):
    mf.validate(copy.deepcopy(base), "E")


def _keys(path) -> list:
    """"a.0.b" -> ["a", 0, "b"]; a tuple is taken as is (for keys holding dots: file names)."""
    return list(path) if isinstance(path, tuple) else [int(p) if p.isdigit() else p for p in path.split(".")]


def _set(path, value):
    """An edit setting the key at `path` to `value`."""
    def edit(m):
        *parents, last = _keys(path)
        for p in parents:
            m = m[p]
        m[last] = value
    return edit


def _drop(path):
    def edit(m):
        *parents, last = _keys(path)
        for p in parents:
            m = m[p]
        del m[last]
    return edit


SHA = "a" * 64
CASES = [  # (edit, a regex the message must match: it names the key)
    (_set("profiles.frames.max", "5"), r"profiles\.frames\.max: Input should be a valid integer \(got '5'\)"),
    (_set("profiles.frames.max", True), r"profiles\.frames\.max: Input should be a valid integer \(got True\)"),
    (_set("profiles.frames.max", 5.0), r"profiles\.frames\.max"),
    (_set("profiles.frames.min", 0), r"profiles\.frames\.min: Input should be greater than or equal to 1"),
    (_set("profiles.frames.multiple", 0), r"profiles\.frames\.multiple"),
    (_set("profiles.frames.opt", 9), r"profiles\.frames: needs min <= opt <= max, got 1, 9, 5"),
    (_set("profiles.frames.step", 1), r"has an unknown key 'profiles\.frames\.step'"),
    (_drop("profiles.height"), r"dims \['height'\] are used by inputs/outputs but have no profile"),
    (_drop("profiles"), r"lacks the key 'profiles'"),
    (_drop("fingerprint"), r"lacks the key 'fingerprint'"),
    (_drop("layout"), r"lacks the key 'layout'"),
    (_set("backend", "tflite"), r"unknown backend 'tflite' at backend"),
    (_set("precision", "fp64"), r"unknown precision 'fp64'"),
    (_set("precision", "fp8"), r"precision fp8 exists only for tensorrt engines"),
    (_set("layout", "nchw"), r"unknown layout 'nchw'"),
    (_set("inputs.0.dtype", "complex32"), r"unknown dtype 'complex32' at inputs\.0\.dtype"),
    (_set("inputs.0.shape", ["batch", 3, "frames", "height", -1]), r"inputs\.0\.shape\.4"),
    (_set("inputs.1.name", "latents"), r"inputs repeat a name"),
    (_set("inputs.0.name", "lat ents"), r"inputs\.0\.name"),
    (_set("inputs", []), r"inputs: List should have at least 1 item"),
    (_set("inputs", 5), r"inputs: Input should be a valid list \(got 5\)"),
    (_set("outputs.0", "prediction"), r"outputs\.0"),
    (_set("device.type", "tpu"), r"unknown type 'tpu' at device\.type"),
    (_set("device.sm", "9"), r"device\.sm: String should match pattern"),
    (_set("device", {"type": "cuda", "name": "x", "sm": "cpu"}), r"device: device type cuda with sm 'cpu'"),
    (_set("model_config", {}), r"model_config has no 'family'"),
    (_set("model_config", "wan"), r"model_config: Input should be a valid dictionary"),
    (_set("toolchain.torch", 2.13), r"toolchain\.torch"),
    (_set("vdrt_version", 1), r"vdrt_version"),
    (_set("artifacts", []), r"artifacts: Input should be a valid dictionary"),
    (_set("artifacts", {}), r"the onnx backend writes \['model\.onnx'\].*lacking \['model\.onnx'\]"),
    (_set(("artifacts", "../x.onnx"), {"sha256": SHA, "bytes": 1}), r"illegal artifact name '\.\./x\.onnx'"),
    (_set(("artifacts", "a/b"), {"sha256": SHA, "bytes": 1}), r"illegal artifact name 'a/b'"),
    (_set(("artifacts", ".hidden"), {"sha256": SHA, "bytes": 1}), r"illegal artifact name '\.hidden'"),
    (_set(("artifacts", "manifest.json"), {"sha256": SHA, "bytes": 1}), r"illegal artifact name 'manifest"),
    (_set(("artifacts", "model.pt2"), {"sha256": SHA, "bytes": 1}), r"with foreign \['model\.pt2'\]"),
    (_set(("artifacts", "model.onnx", "sha256"), "XYZ"), r"artifacts\.model\.onnx\.sha256: String should match"),
    (_set(("artifacts", "model.onnx", "bytes"), -1), r"artifacts\.model\.onnx\.bytes"),
    (_set(("artifacts", "model.onnx", "bytes"), "265"), r"artifacts\.model\.onnx\.bytes.*valid integer"),
    (_set(("artifacts", "model.onnx", "chunk_bytes"), 4096), r"chunk_bytes and chunk_sha256 come together"),
    (_set(("artifacts", "model.onnx", "chunk_bytes"), 16), r"chunk_bytes: Input should be greater than or equal"),
    (_set("signature", {"alg": "rsa"}), r"signature\.alg"),
    (_set("extra", 1), r"has an unknown key 'extra'"),
]


@pytest.mark.parametrize("edit, match", CASES, ids=[c[1][:40] for c in CASES])
def test_malformed_manifest_is_refused_naming_the_key(base, edit, match):
    m = copy.deepcopy(base)
    edit(m)
    msg = _refused(m, match)
    assert msg.startswith("E/manifest.json is invalid: ") and "rebuild the engine" in msg


def test_artifact_sets_follow_the_backend(base):
    m = copy.deepcopy(base)
    m["backend"] = "aoti"  # a backend edit: the artifact set no longer fits (an unlisted model.pt2 never opens)
    _refused(m, r"the aoti backend writes \['model\.pt2'\].*lists \['model\.onnx'\]")
    m["artifacts"] = {n: {"sha256": SHA, "bytes": 1} for n in ("model.plan", "timing.cache", "model.onnx")}
    m["backend"] = "tensorrt"
    m["fingerprint"] = mf.fingerprint(m)
    mf.validate(m, "E")  # tensorrt keeps the onnx files with keep_onnx=True


def test_chunk_records_must_add_up(base):
    m = copy.deepcopy(base)
    m["artifacts"]["model.onnx"].update(bytes=10000, chunk_bytes=4096, chunk_sha256=[SHA, SHA])
    _refused(m, r"10000 bytes in chunks of 4096 make 3 chunk hashes, not 2")


@pytest.mark.parametrize("version, match", [(1, "predates the manifest fingerprint"), (3, "not known"),
                                            ("2", "not known"), (True, "not known"), (None, "not known")])
def test_unknown_format_versions_are_refused_first(base, version, match):
    m = {**copy.deepcopy(base), "format_version": version, "backend": "nonsense"}
    with pytest.raises(EngineError, match=f"format_version {version!r} .*{match}"):
        mf.validate(m, "E")


def test_fingerprint_covers_every_key_and_ignores_formatting(base):
    m = copy.deepcopy(base)
    again = json.loads(json.dumps(m, indent=4, sort_keys=False))
    assert mf.fingerprint(again) == m["fingerprint"] == mf.fingerprint(dict(reversed(list(m.items()))))
    for edit in (_set("profiles.frames.max", 4), _set("backend", "aoti"), _set("build.time", "x"),
                 _set(("artifacts", "model.onnx", "bytes"), 2), _set("model_config.dim", 1), _set("vdrt_version", "9")):
        e = copy.deepcopy(m)
        edit(e)
        assert mf.fingerprint(e) != m["fingerprint"]
    assert mf.fingerprint({**m, "signature": {"x": 1}}) == m["fingerprint"]  # the signature is not covered


def test_hand_edit_is_refused_as_changed_after_the_build(tmp_path):
    d = write_engine(tmp_path / "e")
    edit_manifest(d, _set("profiles.frames.max", 9), refingerprint=False)
    with pytest.raises(EngineError, match=r"manifest\.json was changed after the build: its fingerprint"):
        load_engine(d)


@pytest.mark.parametrize("text, match", [
    ('{"a": 1, "a": 2}', r"duplicate key\(s\) \['a'\]"),
    ('{"a": NaN}', "NaN is not valid JSON"),
    ('{"a": Infinity}', "Infinity is not valid JSON"),
    ("{not json", "unreadable"),
    ("[1, 2]", "not a JSON object"),
    ('"x"', "not a JSON object"),
])
def test_json_traps_are_refused(tmp_path, text, match):
    d = write_engine(tmp_path / "e")
    (d / "manifest.json").write_text(text)
    with pytest.raises(EngineError, match=match):
        load_engine(d)


def test_oversized_and_binary_manifests_are_refused(tmp_path, monkeypatch):
    d = write_engine(tmp_path / "e")
    monkeypatch.setattr(mf, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(EngineError, match=r"manifest\.json is \d+ bytes, not a manifest"):
        load_engine(d)
    monkeypatch.undo()
    (d / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EngineError, match="unreadable"):
        load_engine(d)


def test_the_schema_and_the_manifest_module_agree_on_versions_and_dtypes():
    from vdrt.engines import schema

    assert schema.FORMAT_VERSION == mf.FORMAT_VERSION and mf.KNOWN_VERSIONS == (schema.FORMAT_VERSION,)
    assert schema.DTYPE_NAMES == tuple(mf.DTYPES)
