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
