"""The quality oracle end to end: a random model, the baselines' order, output checks, JSON rows, the table."""
import json

import numpy as np
import pytest

from vdrt.errors import ConfigError, MediaError
from vdrt.export.tiny.data.world import Geometry
from vdrt.export.tiny.quality import oracle
from vdrt.export.tiny.quality.baselines import Baseline
from vdrt.export.tiny.quality.generate import CardGenerator, SampleSettings

TINY = ({"dim": 32, "num_heads": 2, "num_layers": 1, "ffn_dim": 64}, {"dim": 32, "layers": 1, "heads": 2})

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_generator(batch_size=2, **kw):
    from vdrt.export.tiny.arch import sections
    from vdrt.export.tiny.quality.cards import build_models

    den, text = build_models(*sections("wan", *TINY))
    s = SampleSettings.from_defaults({"sampler": "euler", "num_steps": 2, "shift": 3.0})
    return CardGenerator(den, text, s, device="cpu", batch_size=batch_size, name="random", **kw)


def test_evaluate_runs_end_to_end_with_a_random_model():
    r = oracle.evaluate(tiny_generator(), n_clips=3, geometry=Geometry(9, 64, 64), known=2, workers=1)
    s = r["summary"]
    assert r["clips"] == 3 and r["geometry"] == [9, 64, 64] and set(r["per_clip"]) == set(oracle.TASKS)
    assert all(len(v) == 3 for cols in r["per_clip"].values() for v in cols.values())
    assert 0 <= s["t2v.adherent"] <= 1 and np.isfinite(s["extend.psnr"]) and s["extend.psnr"] < 20
    assert r["outputs"]["extend"].shape == (3, 9, 64, 64, 3)
    other = oracle.evaluate(tiny_generator(batch_size=3), 3, 0, Geometry(9, 64, 64), 2, ("t2v",), workers=1)
    diff = np.abs(r["outputs"]["t2v"].astype(int) - other["outputs"]["t2v"])  # paired noise: the batch does not matter
    assert diff.max() <= 1 and diff.mean() < 1e-3  # (a last-bit rounding flip of a pixel at most)
    json.dumps(oracle.row(r))


def test_baselines_are_ordered_as_the_world_says():
    res = {r["name"]: r["summary"] for r in oracle.baselines(16)}
    assert res["truth"]["t2v.adherent"] == 1.0 and res["truth"]["extend.psnr"] == float("inf")
    assert res["truth"]["t2v.coherent"] >= 0.95 and res["truth"]["extend.iou"] > 0.97
    ext = {k: res[k]["extend.psnr"] for k in oracle.EXTEND_BASELINES}
    assert ext["constant_velocity_bounce"] > ext["constant_velocity"] > ext["repeat_last"] > ext["teleport"]
    assert res["erased"]["extend.iou"] == 0.0 and res["erased"]["extend.centroid_error"] > 80
    assert res["constant_velocity_bounce"]["extend.centroid_error"] < res["repeat_last"]["extend.centroid_error"]
    assert res["linear (interpolate)"]["interpolate.psnr"] > res["blend (interpolate)"]["interpolate.psnr"]
    table = oracle.table(oracle.baselines(4)[:2])
    assert table.count("\n") == 3 and "| truth |" in table


def test_generator_output_is_checked():
    def bad(prompts, mode, video=None, known_frames=None):
        return np.zeros((len(prompts), 17, 64, 64, 3), np.float32)

    with pytest.raises(MediaError, match="uint8"):
        oracle.evaluate(bad, n_clips=2, workers=1)
    with pytest.raises(ConfigError, match="tasks"):
        oracle.evaluate(bad, n_clips=2, tasks=("t2i",))
    with pytest.raises(ConfigError, match="n_clips"):
        oracle.evaluate(bad, n_clips=0)


def test_parallel_scoring_matches_inline():
    b = Baseline("teleport", 32)
    a = oracle.evaluate(b, 32, tasks=("extend",), workers=1)["per_clip"]
    c = oracle.evaluate(b, 32, tasks=("extend",), workers=2)["per_clip"]
    assert a == c
