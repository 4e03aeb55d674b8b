"""Session fixtures for the parallel tests: one 2-rank and one 4-rank job, each run once, and the
single-process references they are compared with (see parallel_helpers.py)."""
from __future__ import annotations

import pytest
import torch

import parallel_helpers as ph


@pytest.fixture(scope="session")
def case_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("parallel")
    ph.make_case(d)
    return d


@pytest.fixture(scope="session")
def case(case_dir):
    return torch.load(case_dir / "case.pt")


@pytest.fixture(scope="session")
def w2(case_dir):
    ph.run_job("w2", 2, case_dir)
    return case_dir


@pytest.fixture(scope="session")
def w4(case_dir):
    ph.run_job("w4", 4, case_dir)
    return case_dir


@pytest.fixture(scope="session")
def ref_forward(case):
    """The single-process forward of the same weights and inputs, float32: (2, 16, 3, 8, 12)."""
    with torch.inference_mode():
        return ph.load_model(case)(case["latents"], case["timestep"], case["context"])


@pytest.fixture(scope="session")
def ref_loop(case):
    """The single-process pipeline's final latents after 3 UniPC steps with guidance 3."""
    return ph.sample(ph.tiny_pipeline(ph.load_model(case)))
