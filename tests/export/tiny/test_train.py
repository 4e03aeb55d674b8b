"""Teacher training on CPU at a tiny size: card, compact state files, exact resume, refusal, bad input."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vdrt.export.tiny import state as S
from vdrt.export.tiny import train
from vdrt.export.tiny.quality.cards import load_card_models, read_card
from vdrt.fsutil import sha256_file

TINY = {"wan": ["--config", '{"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64}'],
        "factorized": ["--config", '{"dim": 32, "num_heads": 2, "num_layers": 1}']}
TEXT = ["--text-config", '{"dim": 32, "layers": 1, "heads": 2}']


def _argv(out, arch="wan", *extra):
    return ["--arch", arch, "--out", str(out), "--steps", "4", "--tokens", "300", "--warmup", "2", "--log-every", "1",
            "--device", "cpu", *TINY[arch], *TEXT, *extra]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("wan")
    assert train.main(_argv(out, "wan", "--state-dtype", "float32")) == 0
    return out


def test_card_weights_state_and_curve(wan_dir):
    card = json.loads((wan_dir / "vdrt-tiny-wan-teacher.json").read_text())
    assert {"name", "weights", "sha256", "config", "text", "defaults", "trained"} <= set(card)
    assert card["config"]["family"] == "wan" and card["config"]["cond_channels"] == 8
    assert card["cond_layout"] == "vdrt-native-v2" and card["trained_range"]["frames"] == [9, 33]
    assert card["sha256"] == sha256_file(wan_dir / card["weights"])
    t = card["trained"]
    assert t["steps"] == 4 and t["complete"] and np.isfinite(t["final_loss"]) and len(t["loss_curve"]) == 4
    weights = load_file(wan_dir / card["weights"])
    assert all(v.dtype == torch.float16 for v in weights.values())
    tensors, meta = S.load_state(wan_dir, "vdrt-tiny-wan-teacher")
    assert meta["step"] == 4 and meta["adam_step"] == 4
    for k, v in weights.items():  # the card ships the EMA, in fp16
        torch.testing.assert_close(v, tensors[f"ema/{k}"].half(), rtol=0, atol=0)
    den, text = load_card_models(read_card(wan_dir / "vdrt-tiny-wan-teacher.json"))
    assert den.config.dim == 32 and text.encoder.config.dim == 32
    assert sorted(p.name for p in wan_dir.iterdir()) == ["vdrt-tiny-wan-teacher.json",
                                                          "vdrt-tiny-wan-teacher.safetensors",
                                                          "vdrt-tiny-wan-teacher.state-00.safetensors"]


def test_float32_resume_is_bit_identical(wan_dir, tmp_path):
    out = tmp_path / "staged"
    assert train.main(_argv(out, "wan", "--state-dtype", "float32", "--stop-at", "2")) == 0
    assert train.main(_argv(out, "wan", "--state-dtype", "float32")) == 2  # refuses to start over without --resume
    assert train.main(_argv(out, "wan", "--state-dtype", "float32", "--resume")) == 0
    a = json.loads((wan_dir / "vdrt-tiny-wan-teacher.json").read_text())["trained"]["loss_curve"]
    b = json.loads((out / "vdrt-tiny-wan-teacher.json").read_text())["trained"]["loss_curve"]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    x, y = S.load_state(wan_dir, "vdrt-tiny-wan-teacher")[0], S.load_state(out, "vdrt-tiny-wan-teacher")[0]
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_bf16_state_resumes_with_the_card_ema(tmp_path):
    out = tmp_path / "bf16"
    assert train.main(_argv(out, "factorized", "--stop-at", "2")) == 0
    tensors, meta = S.load_state(out, "vdrt-tiny-factorized-teacher")
    assert not any(k.startswith("ema/") for k in tensors)
    assert {v.dtype for k, v in tensors.items() if not k.startswith("rng")} == {torch.bfloat16}
    assert train.main(_argv(out, "factorized", "--resume")) == 0
    card = json.loads((out / "vdrt-tiny-factorized-teacher.json").read_text())
    assert card["trained"]["steps"] == 4 and card["config"]["family"] == "factorized"


def test_state_shards_stay_under_the_limit(tmp_path):
    tensors = {f"t{i}": torch.randn(1000) for i in range(10)}  # 4000 bytes each
    paths = S.save_state(tmp_path, "m", tensors, {"step": 1}, limit=10_000)
    assert len(paths) == 5 and all(p.stat().st_size < 10_000 + 1000 for p in paths)
    got, meta = S.load_state(tmp_path, "m")
    assert meta["step"] == 1 and all(torch.equal(got[k], v) for k, v in tensors.items())
    S.save_state(tmp_path, "m", dict(list(tensors.items())[:2]), {"step": 2}, limit=10_000)
    assert len(S.state_files(tmp_path, "m")) == 1  # stale shards of the larger save are gone


def test_mixed_shards_are_refused(tmp_path):
    S.save_state(tmp_path, "m", {"a": torch.ones(1000), "b": torch.ones(1000)}, {"step": 1}, limit=5000)
    keep = (tmp_path / "m.state-01.safetensors").read_bytes()
    S.save_state(tmp_path, "m", {"a": torch.zeros(1000), "b": torch.zeros(1000)}, {"step": 2}, limit=5000)
    (tmp_path / "m.state-01.safetensors").write_bytes(keep)
    with pytest.raises(Exception, match="different saves"):
        S.load_state(tmp_path, "m")


@pytest.mark.parametrize("extra, word", [(["--arch", "unet"], "--arch"), (["--config", "[1]"], "--config"),
                                         (["--state-dtype", "int8"], "--state-dtype")])
def test_bad_input_is_refused_before_training(tmp_path, extra, word, caplog):
    assert train.main([*_argv(tmp_path / "x"), *extra]) == 2
    assert word in caplog.text and not (tmp_path / "x").exists()
