"""Distillation on CPU at a tiny size: trajectories through the sampling loop, the student card, bad input."""
import json

import pytest
import torch

from vdrt.export.tiny import distill, train
from vdrt.export.tiny.quality.cards import read_card

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["--config", '{"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64}',
        "--text-config", '{"dim": 32, "layers": 1, "heads": 2}']


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert train.main(["--arch", "wan", "--out", str(out), "--steps", "2", "--tokens", "300", "--warmup", "1",
                       "--device", "cpu", *TINY]) == 0
    return out / "vdrt-tiny-wan-teacher.json"


def test_student_card(teacher, tmp_path):
    argv = ["--teacher", str(teacher), "--out", str(tmp_path), "--trajectories", "3", "--traj-batch", "1", "--grid",
            "4", "--steps", "2", "--tokens", "300", "--warmup", "1", "--log-every", "1", "--device", "cpu"]
    assert distill.main(argv) == 0
    card = json.loads((tmp_path / "vdrt-tiny-wan.json").read_text())
    assert card["defaults"]["sampler"] == "fewstep" and card["defaults"]["sampler_timesteps"] == [1000, 750, 500, 250]
    assert card["config"] == read_card(teacher)["config"] and card["cond_layout"] == "vdrt-native-v2"
    t = card["trained"]
    assert t["trajectories"] == 3 and t["steps"] == 2 and t["teacher"]["name"] == "vdrt-tiny-wan-teacher"
    assert distill.main(argv) == 2  # a saved state is not overwritten without --resume


def test_trajectories_land_on_the_student_sigmas(teacher):
    from vdrt.export.tiny import modes
    from vdrt.export.tiny.data.world import Geometry, sample_scenes
    from vdrt.export.tiny.quality.cards import load_card_models

    den, text = load_card_models(read_card(teacher))
    gen = torch.Generator().manual_seed(0)
    b = modes.make_batch(sample_scenes(2, gen, Geometry(9, 64, 64)), gen)
    states, sig = distill.solve(den, text.encoder, b, torch.randn(b.x0.shape, generator=gen), 16, 4.0, False)
    torch.testing.assert_close(sig, torch.tensor([1.0, 0.75, 0.5, 0.25]), atol=3e-3, rtol=0)
    assert len(states) == 5 and states[4].abs().max() <= 1 and not torch.equal(states[1], states[2])


@pytest.mark.parametrize("extra, word", [(["--grid", "6"], "--grid"), (["--traj-share", "1.5"], "--traj-share")])
def test_bad_input(teacher, tmp_path, extra, word, caplog):
    assert distill.main(["--teacher", str(teacher), "--out", str(tmp_path), *extra]) == 2
    assert word in caplog.text
