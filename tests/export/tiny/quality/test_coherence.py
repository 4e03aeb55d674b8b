"""Coherence flags: true clips are coherent; teleports, vanishing, splitting and smearing are caught."""
import numpy as np
import pytest

from vdrt.export.tiny.data import procedural as P
from vdrt.export.tiny.quality.coherence import KEYS, coherence


@pytest.fixture(scope="module")
def clips():
    return P.batch("test", 0, 64)[0]


def test_true_clips_are_coherent(clips):
    rows = [coherence(c) for c in clips]
    assert np.mean([r["coherent"] for r in rows]) >= 0.95
    assert all(r["objects"] in (1, 2) for r in rows) and sum(r["jumps"] for r in rows) == 0


def test_damage_is_caught(clips):
    rng = np.random.default_rng(0)
    c = clips[0].copy()
    jitter = np.stack([np.roll(f, tuple(rng.integers(15, 25, 2)), axis=(0, 1)) if t % 2 else f
                       for t, f in enumerate(c)])
    assert not coherence(jitter)["teleport_free"] and coherence(jitter)["jumps"] > 3
    gone = c.copy()
    gone[5:] = gone[0, 0, 0]  # everything after frame 4 is background
    assert not coherence(gone)["persistent"]
    split = c.copy()
    split[:, :, 32:] = np.roll(split[:, :, 32:], 20, axis=1)  # two halves far apart on most frames
    flags = coherence(split)
    assert not flags["coherent"]
    blank = np.zeros_like(c)
    assert coherence(blank) == {**dict.fromkeys(KEYS, False), "jumps": 0, "objects": 0}
