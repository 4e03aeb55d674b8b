"""Fixtures of the hostile suite: a clean working folder per scenario, hostile media made once per session,
single-threaded torch, and the per-class report (VDRT_HARDENING_REPORT=path.json)."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest



@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every scenario on one torch thread (the `vdrt` commands run here get --threads 1 too)."""
    yield


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder (the cwd, the cache) that must stay empty after a refusal."""
    d = tmp_path / "work"
    d.mkdir()
    monkeypatch.chdir(d)
    monkeypatch.setenv("VDRT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VDRT_MEMORY_LIMIT", raising=False)
    return d


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Inputs a hostile user hands over, made once: ordinary ones and broken, huge or long ones."""
    from PIL import Image

    from vdrt.io import Video

    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    Video(rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)).save(d / "clip.mp4")
    t, y, x = np.mgrid[0:120, 0:270, 0:480]
    long = ((x + 4 * t) % 256).astype(np.uint8)[..., None].repeat(3, -1)  # 120 frames of 480x270, a moving ramp
    Video(long, fps=24).save(d / "long.mp4")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "square.png")
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(d / "wide.png")
    Image.new("1", (11000, 11000)).save(d / "bomb.png", optimize=True)  # 121 megapixels, a few KB
    Image.new("L", (32, 32), 255).save(d / "mask.png")
    Image.new("L", (48, 16), 255).save(d / "mask_other_size.png")
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (d / "truncated.png").write_bytes((d / "square.png").read_bytes()[:60])
    (d / "text.txt").write_text("not a video")
    (d / "empty.png").write_bytes(b"")
    (d / "empty_dir").mkdir()
    (d / "mixed").mkdir()
    Image.new("RGB", (16, 16)).save(d / "mixed" / "a_1.png")
    Image.new("RGB", (24, 16)).save(d / "mixed" / "a_2.png")
    np.save(d / "mask_bad.npy", np.full((32, 32), 3.0))
    return d


def pytest_sessionfinish(session, exitstatus):
    from tests.hardening.hardening_helpers import OUTCOMES, RESULTS

    path = os.environ.get("VDRT_HARDENING_REPORT")
    if not path or not RESULTS:
        return
    table: dict[str, Counter] = {}
    for cls, _, outcome in RESULTS:
        table.setdefault(cls, Counter())[outcome] += 1
    rows = {cls: {o: c[o] for o in OUTCOMES} for cls, c in sorted(table.items())}
    with open(path, "w") as f:
        json.dump({"classes": rows, "total": {o: sum(r[o] for r in rows.values()) for o in OUTCOMES},
                   "scenarios": [list(r) for r in RESULTS]}, f, indent=1)
