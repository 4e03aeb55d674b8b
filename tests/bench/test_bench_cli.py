"""`vdrt bench`: --quality on a model card from --weights-dir, and denoiser-step timing."""
import json

import pytest
import torch

from vdrt.cli import main

TINY = ({"dim": 32, "num_heads": 2, "num_layers": 1}, {"dim": 32, "layers": 1, "heads": 2})  # factorized arch


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory):
    from vdrt.export.tiny.arch import sections
    from vdrt.export.tiny.common import write_card
    from vdrt.export.tiny.quality.cards import build_models
    from vdrt.export.tiny.trainer import named_parameters

    out = tmp_path_factory.mktemp("cards")
    config, text = sections("factorized", *TINY)
    den, cond = build_models(config, text, seed=3)
    state = {k: p.detach() for k, p in named_parameters(den, cond.encoder).items()}
    defaults = {"num_frames": 17, "height": 64, "width": 64, "num_steps": 2, "sampler": "fewstep",
                "sampler_timesteps": [1000, 500], "guidance": 1.0, "shift": 1.0, "fps": 8}
    write_card(out, "tiny-test", state, config, text, defaults, {"note": "random init, for tests"})
    return out


def test_bench_quality_prints_and_writes_the_oracle_row(card_dir, tmp_path, capsys):
    out = tmp_path / "q.json"
    argv = ["bench", "tiny-test", "--quality", "--weights-dir", str(card_dir), "--clips", "2", "--device", "cpu",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "extend.psnr" in printed and "t2v.adherent" in printed and "fewstep-2" in printed
    row = json.loads(out.read_text())[0]
    assert row["bench"] == "quality" and row["clips"] == 2 and row["impl"] == "tiny-test fewstep-2"
    assert 0 < row["extend.psnr"] < 100 and row["ms_per_clip"]["t2v"] > 0 and row["device"] == "cpu"


def test_bench_times_a_card_and_a_preset(card_dir, capsys):
    assert main(["bench", "tiny-test", "--weights-dir", str(card_dir), "--repeats", "1", "--frames", "3",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "1x3x64x64" in printed and "ms " in printed
    assert main(["bench", "factorized-tiny", "--repeats", "1", "--frames", "2", "--height", "16", "--width", "16",
                 "--device", "cpu", "--batch", "2"]) == 0
    assert "2x2x16x16" in capsys.readouterr().out


def test_bench_without_a_card_says_how_to_get_one(tmp_path, capsys):
    assert main(["bench", "--quality", "--weights-dir", str(tmp_path), "--clips", "2"]) == 2
    err = capsys.readouterr().err
    assert "vdrt-tiny.json" in err and "--out DIR" in err
    assert main(["bench", "factorized-tiny", "--dtype", "float64"]) == 2
    assert "--dtype" in capsys.readouterr().err


def test_step_inputs_fit_each_family():
    from vdrt.bench.step import step_inputs
    from vdrt.models import config_from_name

    x, _, ctx, extra = step_inputs(config_from_name("wan-tiny-i2v"), 2, 17, 64, 64, "cpu", torch.float32)
    cfg = config_from_name("wan-tiny-i2v")
    assert x.shape == (2, cfg.in_channels, 5, 8, 8) and ctx.shape == (2, cfg.text_len, cfg.text_dim)
    assert extra["cond"].shape == (2, 20, 5, 8, 8) and extra["image_embeds"].shape == (2, 257, cfg.image_dim)


def test_bench_steps_with_weights_dir_says_to_use_the_env_var(card_dir, capsys):
    assert main(["bench", "tiny-test", "--weights-dir", str(card_dir), "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "VDRT_WEIGHTS_DIR=DIR" in err and "Traceback" not in err
