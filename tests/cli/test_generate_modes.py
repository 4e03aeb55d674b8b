"""`vdrt generate` with the modes of issue 12: sizes taken from the input, modes a model cannot run refused
(exit 2, one line, before any weight loads)."""
from __future__ import annotations

import numpy as np
import pytest

from vdrt import io
from vdrt.cli import main


@pytest.fixture(scope="module")
def gif(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("media") / "in.gif"
    io.Video(rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), fps=8).save(path)
    return path


def test_slowmo_doubles_the_frame_rate(tmp_path, gif, capsys):
    out = tmp_path / "slow/"
    argv = ["generate", "x", "--model", "factorized-tiny", "--mode", "slowmo", "--video", str(gif), "--height", "32",
            "--width", "32", "--steps", "1", "--no-progress", "-o", str(out) + "/"]
    assert main(argv) == 0
    assert io.read_video(out).shape == (5, 32, 32, 3)  # 2 * (3 - 1) + 1


def test_upscale_on_a_model_without_hints_is_refused_before_loading(tmp_path, gif, capsys, monkeypatch):
    from vdrt.pipeline import sources

    monkeypatch.setattr(sources, "resolve", lambda *a, **k: pytest.fail("weights were loaded"))
    argv = ["generate", "x", "--model", "factorized-tiny", "--mode", "upscale", "--video", str(gif),
            "-o", str(tmp_path / "up.gif")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "upscale needs a model trained for it" in err and "Traceback" not in err
