"""The shipped vdrt-tiny: the default model, its trained sizes, its vocabulary, and its hash check."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vdrt
from vdrt import embedded
from vdrt.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def tiny():
    return vdrt.Pipeline.from_pretrained("vdrt-tiny", device="cpu")


def test_shipped_and_default():
    from vdrt.cli.options import default_model

    assert {"vdrt-tiny", "vdrt-tiny-teacher"} <= set(embedded.names())
    assert default_model() == "vdrt-tiny"
    for name in ("vdrt-tiny", "vdrt-tiny-teacher"):
        card = embedded.card(name)
        assert (embedded.WEIGHTS_DIR / card.weights).stat().st_size <= 15 * 2**20


def test_student_generates_at_its_trained_size(tiny):
    assert tiny.defaults.sampler == "fewstep" and tiny.defaults.num_steps == 4
    v = tiny("a red circle bouncing", seed=0, progress=False)
    assert v.frames.shape == (17, 64, 64, 3) and v.frames.dtype == np.uint8
    red = (v.frames[..., 0] > 150) & (v.frames[..., 1] < 100) & (v.frames[..., 2] < 100)
    assert red.sum() > 17 * 20  # a red object is drawn in the clip


def test_untrained_sizes_are_refused(tiny):
    with pytest.raises(ConfigError, match="trained at 17 frames of 64x64"):
        tiny("a red circle", num_frames=9, progress=False)
    with pytest.raises(ConfigError, match="--height 64"):
        tiny("a red circle", height=32, width=32, progress=False)


def test_prompt_without_known_words_lists_the_vocabulary(tiny):
    with pytest.raises(ConfigError, match="circle"):
        tiny("a zebra galloping", progress=False)


def test_corrupted_shipped_checkpoint_is_refused(tmp_path, monkeypatch):
    card = embedded.card("vdrt-tiny")
    shutil.copy(embedded.WEIGHTS_DIR / "vdrt-tiny.json", tmp_path / "vdrt-tiny.json")
    data = bytearray((embedded.WEIGHTS_DIR / card.weights).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / card.weights).write_bytes(bytes(data))
    monkeypatch.setenv("VDRT_WEIGHTS_DIR", str(tmp_path))
    embedded.card.cache_clear()
    try:
        with pytest.raises(CheckpointError, match="corrupted"):
            vdrt.Pipeline.from_pretrained("vdrt-tiny", device="cpu")
    finally:
        embedded.card.cache_clear()


def test_card_records_how_it_was_trained():
    t = embedded.card("vdrt-tiny").trained
    assert t["script"] == "vdrt.export.tiny.distill" and t["steps"] > 0 and t["trajectories"] > 0
    assert json.dumps(embedded.card("vdrt-tiny-teacher").trained)
