"""The quality gate: the default model at fixed seeds on the CPU stays within bounds measured from its spread."""
import json
from pathlib import Path

import pytest

from vdrt.export.tiny.quality import gate as G

GATE = json.loads((Path(__file__).parent / "gate.json").read_text())

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_default_model_passes_its_gate():
    """Generation + scoring of the default model (see gate.json): a runtime change that degrades it fails here."""
    summary = G.run(GATE["model"], GATE["clips"], GATE["tasks"])
    assert G.check(summary, GATE) == []


def test_the_gate_fails_just_beyond_each_tolerance():
    ok = {k: m["value"] for k, m in GATE["metrics"].items()}
    assert G.check(ok, GATE) == []
    for k, m in GATE["metrics"].items():
        if m["value"] is None:
            continue
        tol = G.tolerance(k, m["spread"], GATE["clips"])
        inside = {**ok, k: m["value"] - G.METRICS[k] * tol * 0.99}
        beyond = {**ok, k: m["value"] - G.METRICS[k] * (tol * 1.01 + 1e-9)}
        assert G.check(inside, GATE) == [], k
        assert len(G.check(beyond, GATE)) == 1 and k in G.check(beyond, GATE)[0]


def noised_weights(model, rel: float = 0.1):
    """Every weight plus Gaussian noise of `rel` times its own RMS (seeded): damage of another kind than int4."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * rel * p.pow(2).mean().sqrt())
    return model


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["int4", "noised"])
def test_a_damaged_default_model_fails_its_gate(damage):
    """The gate can fail: the default model with int4 weights (group 32) or 10%-RMS noise on its weights."""
    from vdrt.export.tiny.quality.damage import int4_weights

    transform = int4_weights if damage == "int4" else noised_weights
    problems = G.check(G.run(GATE["model"], GATE["clips"], GATE["tasks"], transform=transform), GATE)
    assert problems, f"{damage} weights passed the gate"
