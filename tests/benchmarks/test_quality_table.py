"""benchmarks/quality_table.py: docs/quality.md's acceleration table is the one the JSON rows generate."""
from pathlib import Path

import pytest
from script_helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_table.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not in this tree")


@pytest.fixture(scope="module")
def qt():
    return load_script("quality_table.py", register=True)


def test_docs_table_agrees_with_the_rows(qt):
    assert qt.main(["--check"]) == 0, "run: python benchmarks/quality_table.py --write"


def test_every_row_has_a_speed_source_or_says_not_measured(qt):
    for a in qt.ACCELS:
        speed, _ = qt.speed_cells(a)
        assert speed == "not measured" or "h200/" in speed, a


def test_the_negative_controls_are_flagged_worse(qt):
    """The oracle must see int4 weights and a too-small sparse window (issue 12)."""
    for a in qt.ACCELS:
        if "negative control" in a.name:
            report = qt.compare_row(a)
            assert report is not None and report["verdict"] == "worse", a.name


def test_a_stale_table_is_found(qt, tmp_path, monkeypatch):
    doc = tmp_path / "quality.md"
    doc.write_text(f"x\n{qt.START}\n| old |\n{qt.END}\ny\n")
    monkeypatch.setattr(qt, "DOC", doc)
    assert qt.main(["--check"]) == 1
    assert qt.main(["--write"]) == 0 and qt.main(["--check"]) == 0
    assert doc.read_text().startswith("x\n") and doc.read_text().endswith("\ny\n")
