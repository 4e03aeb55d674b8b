"""Shared fixtures for runtime tests: small, fast pipelines on random-weight presets."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_pipe():
    import vdrt

    return vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu", dtype=torch.float32)


@pytest.fixture
def small():
    """A small generation size for factorized-tiny (patch 4)."""
    return dict(num_frames=5, height=32, width=32, num_steps=2, progress=False)
